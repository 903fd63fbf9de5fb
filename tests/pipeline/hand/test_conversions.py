import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.hand import rotations
from pipeline.hand.conversions import opengl_to_opencv, pca_to_flat
from pipeline.hand.joints import CANONICAL21, MANO21, permutation, reorder_joints

from conftest import random_rotations


def test_joint_orders():
    assert CANONICAL21[:5] == ("wrist", "thumb1", "thumb2", "thumb3", "thumb4")
    assert CANONICAL21[-1] == "little4" and MANO21[16:] == ("thumb4", "index4", "middle4", "ring4", "little4")
    joints = torch.arange(21 * 3).reshape(1, 21, 3)
    back = reorder_joints(reorder_joints(joints, "mano21", "canonical21"), "canonical21", "mano21")
    assert torch.equal(back, joints)
    assert permutation("mano21", "canonical21")[:5] == [0, 13, 14, 15, 16]
    with pytest.raises(ValueError, match="lacks joints"):
        permutation("mano16", "canonical21")


def test_model_joints_match_smplx_joints_plus_tips(hand_model, builtin_arrays):
    import smplx
    from smplx.utils import Struct

    pose = torch.cat([random_rotations(3, 0), hand_model.anatomy.sample(3, 1)], dim=1)
    layer = smplx.MANO("", data_struct=Struct(**builtin_arrays), use_pca=False, flat_hand_mean=True,
                       dtype=torch.float64)
    out = layer(global_orient=pose[:, :3], hand_pose=pose[:, 3:], betas=torch.zeros(3, 10, dtype=torch.float64))
    mano21 = torch.cat([out.joints, out.vertices[:, list(hand_model.fingertip_vertex_ids)]], dim=1)
    _, joints = hand_model(pose)
    torch.testing.assert_close(joints, reorder_joints(mano21, "mano21", "canonical21"))


@pytest.mark.parametrize("num_components", [12, 45])
def test_dexycb_pca_pose_matches_smplx_with_mean_hand(hand_model, builtin_arrays, num_components):
    import smplx
    from smplx.utils import Struct

    generator = torch.Generator().manual_seed(num_components)
    pose_pca = torch.cat([random_rotations(4, 2), torch.randn(4, num_components, generator=generator,
                                                                dtype=torch.float64) * 0.5], dim=1)
    betas = torch.randn(4, 10, generator=generator, dtype=torch.float64)
    flat = pca_to_flat(pose_pca, hand_model.hands_components, hand_model.hands_mean)
    ours, _ = hand_model(flat, betas)
    if num_components < 45:  # smplx's PCA path, relative to the mean hand
        layer = smplx.MANO("", data_struct=Struct(**builtin_arrays), use_pca=True, num_pca_comps=num_components,
                           flat_hand_mean=False, dtype=torch.float64)
        reference = layer(global_orient=pose_pca[:, :3], hand_pose=pose_pca[:, 3:], betas=betas).vertices
    else:  # smplx treats 45 components as full axis-angle, so project explicitly (as manopth does)
        layer = smplx.MANO("", data_struct=Struct(**builtin_arrays), use_pca=False, flat_hand_mean=False,
                           dtype=torch.float64)
        full = pose_pca[:, 3:] @ torch.as_tensor(builtin_arrays["hands_components"])
        reference = layer(global_orient=pose_pca[:, :3], hand_pose=full, betas=betas).vertices
    torch.testing.assert_close(ours, reference, atol=1e-9, rtol=0)


def test_quaternions_against_scipy():
    rotvec = torch.cat([random_rotations(200, 3), torch.tensor([[np.pi, 0, 0], [0, 1e-9, 0], [0, 0, 0]])])
    reference = Rotation.from_rotvec(rotvec.numpy())
    quaternion = rotations.axis_angle_to_quaternion(rotvec)
    np.testing.assert_allclose(rotations.to_scipy(quaternion).as_matrix(), reference.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(rotations.axis_angle_to_matrix(rotvec).numpy(), reference.as_matrix(), atol=1e-9)
    matrix_quaternion = rotations.matrix_to_quaternion(torch.as_tensor(reference.as_matrix()))
    np.testing.assert_allclose(matrix_quaternion.numpy(), rotations.from_scipy(reference), atol=1e-9)
    assert (matrix_quaternion[:, 0] >= 0).all()
    back = rotations.matrix_to_axis_angle(torch.as_tensor(reference.as_matrix()))
    np.testing.assert_allclose(Rotation.from_rotvec(back.numpy()).as_matrix(), reference.as_matrix(), atol=1e-9)
    assert rotations.wxyz_to_xyzw(np.array([1.0, 2, 3, 4])).tolist() == [2, 3, 4, 1]
    assert rotations.xyzw_to_wxyz(np.array([2.0, 3, 4, 1])).tolist() == [1, 2, 3, 4]
    q = rotations.axis_angle_to_quaternion(rotvec[:5])
    product = rotations.quaternion_multiply(q, q)
    np.testing.assert_allclose(rotations.quaternion_to_matrix(product).numpy(),
                               (reference[:5] * reference[:5]).as_matrix(), atol=1e-9)


def test_ho3d_opengl_parameters_become_opencv(hand_model):
    pose = torch.cat([random_rotations(3, 4), hand_model.anatomy.sample(3, 5)], dim=1)
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    trans = torch.tensor([[0.05, -0.02, -0.5], [0.0, 0.1, -0.7], [-0.1, 0.0, -0.4]], dtype=torch.float64)
    gl_vertices, _ = hand_model(pose, betas, trans)
    cv_pose, cv_trans = opengl_to_opencv(pose, betas, trans, hand_model)
    cv_vertices, _ = hand_model(cv_pose, betas, cv_trans)
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(cv_vertices, gl_vertices * flip, atol=1e-6, rtol=0)
    assert (cv_vertices[..., 2] > 0).all(), "in front of an OpenCV camera"
