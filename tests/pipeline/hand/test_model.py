import numpy as np
import pytest
import torch
import trimesh

from pipeline.geometry import close_boundary_loops, self_intersections
from pipeline.hand.conversions import mirror_pose, mirror_translation
from pipeline.hand.joints import CANONICAL21, FINGERS, PART_NAMES
from pipeline.hand.rotations import axis_angle_to_matrix

from conftest import random_rotations


def test_zero_pose_gives_template(hand_model, builtin_arrays):
    vertices, joints = hand_model(torch.zeros(2, 48, dtype=torch.float64))
    np.testing.assert_allclose(vertices[1].numpy(), builtin_arrays["v_template"], atol=1e-9)
    regressed = builtin_arrays["J_regressor"] @ builtin_arrays["v_template"]
    np.testing.assert_allclose(joints[0, 0].numpy(), regressed[0], atol=1e-9)
    assert joints.shape == (2, 21, 3)


def test_global_rotation_and_translation_are_rigid(hand_model):
    pose = hand_model.anatomy.sample(3, seed=1)
    pose = torch.cat([torch.zeros(3, 3, dtype=torch.float64), pose], dim=1)
    rotated = pose.clone()
    rotated[:, :3] = random_rotations(3, seed=2)
    trans = torch.tensor([[0.1, -0.2, 0.5], [0.0, 0.0, 0.3], [-0.4, 0.2, 1.0]], dtype=torch.float64)
    v0, j0 = hand_model(pose)
    v1, j1 = hand_model(rotated, trans=trans)
    rot = axis_angle_to_matrix(rotated[:, :3])
    wrist = j0[:, :1]
    expected = (v0 - wrist) @ rot.transpose(1, 2) + wrist + trans[:, None]
    torch.testing.assert_close(v1, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(j1, (j0 - wrist) @ rot.transpose(1, 2) + wrist + trans[:, None], atol=1e-6, rtol=0)


def test_gradients_are_finite_including_at_zero(hand_model):
    pose = torch.zeros(2, 48, dtype=torch.float64)
    pose[1, 3:] = hand_model.anatomy.sample(1, seed=0)[0]
    pose.requires_grad_(True)
    betas = torch.zeros(2, 10, dtype=torch.float64, requires_grad=True)
    vertices, joints = hand_model(pose, betas)
    (vertices.square().sum() + joints.sum()).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert torch.isfinite(betas.grad).all() and betas.grad.abs().sum() > 0


def test_left_equals_mirrored_right(hand_model, left_hand_model):
    pose = torch.cat([random_rotations(4, seed=3), hand_model.anatomy.sample(4, seed=4)], dim=1)
    betas = torch.randn(4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    trans = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.1
    v_right, j_right = hand_model(pose, betas, trans)
    v_left, j_left = left_hand_model(mirror_pose(pose), betas, mirror_translation(trans))
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(v_left, v_right * mirror, atol=1e-6, rtol=0)
    torch.testing.assert_close(j_left, j_right * mirror, atol=1e-6, rtol=0)
    left_mesh = trimesh.Trimesh(v_left[0].numpy(), left_hand_model.faces, process=False)
    assert left_mesh.volume > 0, "mirrored faces must stay outward-facing"


def test_builtin_mesh_is_watertight_and_free_of_self_intersection(hand_model):
    vertices, _ = hand_model(torch.zeros(1, 48, dtype=torch.float64))
    mesh = trimesh.Trimesh(vertices[0].numpy(), hand_model.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert 700 <= hand_model.num_vertices <= 1000
    assert len(self_intersections(mesh.vertices, mesh.faces)) == 0
    np.testing.assert_array_equal(hand_model.closed_faces, hand_model.faces)


def test_fingertips_are_at_the_tips(hand_model):
    vertices, joints = hand_model(torch.zeros(1, 48, dtype=torch.float64))
    vertices, joints = vertices[0].numpy(), joints[0].numpy()
    for index, finger in enumerate(FINGERS):
        tip = CANONICAL21.index(f"{finger}4")
        np.testing.assert_allclose(joints[tip], vertices[hand_model.fingertip_vertex_ids[index]])
        distal = joints[tip - 1]
        direction = (joints[tip] - distal) / np.linalg.norm(joints[tip] - distal)
        finger_vertices = vertices[hand_model.vertex_parts == PART_NAMES.index(finger)]
        reach = (finger_vertices - distal) @ direction
        assert (joints[tip] - distal) @ direction >= reach.max() - 1e-6, finger
    length = np.linalg.norm(joints[CANONICAL21.index("middle4")] - joints[0])
    assert 0.18 <= length <= 0.19


def test_every_part_has_vertices_and_tips_belong_to_their_finger(hand_model):
    counts = np.bincount(hand_model.vertex_parts, minlength=len(PART_NAMES))
    assert (counts > 20).all(), dict(zip(PART_NAMES, counts))
    tip_parts = hand_model.vertex_parts[list(hand_model.fingertip_vertex_ids)]
    assert [PART_NAMES[p] for p in tip_parts] == list(FINGERS)


@pytest.mark.parametrize("finger", FINGERS)
def test_length_betas_lengthen_their_finger_only(hand_model, finger):
    from pipeline.hand.builtin import SHAPE_DIRECTIONS

    beta = torch.zeros(2, 10, dtype=torch.float64)
    beta[1, [name for name, _ in SHAPE_DIRECTIONS].index(f"{finger}_length")] = 2.0
    _, joints = hand_model(torch.zeros(2, 48, dtype=torch.float64), beta)

    def length(j, name):
        first = CANONICAL21.index(f"{name}1")
        return np.linalg.norm(np.diff(j[first:first + 4].numpy(), axis=0), axis=1).sum()

    for other in FINGERS:
        ratio = length(joints[1], other) / length(joints[0], other)
        if other == finger:
            assert ratio == pytest.approx(1.12, abs=0.02)
        else:
            assert ratio == pytest.approx(1.0, abs=0.01)


def test_size_beta_scales_the_hand(hand_model):
    beta = torch.zeros(2, 10, dtype=torch.float64)
    beta[1, 0] = 1.0
    vertices, _ = hand_model(torch.zeros(2, 48, dtype=torch.float64), beta)
    extent = vertices.amax(dim=1) - vertices.amin(dim=1)
    torch.testing.assert_close(extent[1] / extent[0], torch.full((3,), 1.04, dtype=torch.float64), atol=2e-3, rtol=0)


def test_builtin_build_is_deterministic(builtin_arrays):
    from pipeline.hand.builtin import build_builtin_arrays

    fresh = build_builtin_arrays()
    for key, value in builtin_arrays.items():
        np.testing.assert_array_equal(fresh[key], value, err_msg=key)


def test_closing_boundary_loops_makes_an_open_mesh_watertight():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    centre_face = np.argmax(sphere.triangles_center[:, 2])
    ring = np.flatnonzero(np.isin(sphere.faces, sphere.faces[centre_face]).any(axis=1))
    open_faces = np.delete(sphere.faces, ring, axis=0)
    assert not trimesh.Trimesh(sphere.vertices, open_faces, process=False).is_watertight
    closed = trimesh.Trimesh(sphere.vertices, close_boundary_loops(open_faces), process=False)
    assert closed.is_watertight and closed.is_winding_consistent and closed.volume > 0


def test_self_intersection_check_finds_crossing_triangles():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.2, -0.5], [0.3, 0.2, 0.5], [0.2, 0.3, 0.5]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    assert len(self_intersections(vertices, faces)) == 1
    apart = vertices + np.array([0, 0, 0, 5, 5, 5])[:, None] * np.array([0, 0, 1.0])
    assert len(self_intersections(apart, faces)) == 0


def test_wrong_shapes_name_the_argument(hand_model):
    from pipeline.errors import InputError

    with pytest.raises(InputError, match=r"'pose' has shape \(2, 45\), expected \(N, 48\)"):
        hand_model(torch.zeros(2, 45, dtype=torch.float64))
    with pytest.raises(InputError, match="'betas'"):
        hand_model(torch.zeros(2, 48, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(hand_model):
    pose = torch.cat([random_rotations(8, 5), hand_model.anatomy.sample(8, 6)], dim=1)
    cpu_vertices, _ = hand_model(pose)
    gpu_vertices, _ = hand_model.to("cuda")(pose.cuda())
    hand_model.to("cpu")
    torch.testing.assert_close(gpu_vertices.cpu(), cpu_vertices, atol=1e-6, rtol=0)
