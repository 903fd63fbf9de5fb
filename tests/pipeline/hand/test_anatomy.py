import numpy as np
import pytest
import torch

from pipeline.hand.conversions import mirror_pose
from pipeline.hand.joints import CANONICAL21


def test_round_trip_angles_pose_angles(hand_model):
    angles = hand_model.anatomy.sample_angles(256, seed=7)
    pose = hand_model.anatomy.to_axis_angle(angles)
    torch.testing.assert_close(hand_model.anatomy.from_axis_angle(pose), angles, atol=1e-9, rtol=0)
    torch.testing.assert_close(hand_model.anatomy.to_axis_angle(hand_model.anatomy.from_axis_angle(pose)), pose,
                               atol=1e-9, rtol=0)


def test_mirrored_pose_has_the_same_angles_on_the_left_hand(hand_model, left_hand_model):
    pose = hand_model.anatomy.sample(64, seed=8)
    right = hand_model.anatomy.from_axis_angle(pose)
    left = left_hand_model.anatomy.from_axis_angle(mirror_pose(pose))
    torch.testing.assert_close(left, right, atol=1e-9, rtol=0)


def test_positive_flexion_curls_toward_the_palm_and_abduction_toward_the_thumb(hand_model):
    palm_side = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)  # the builtin palm faces -y
    angles = torch.zeros(3, 15, 3, dtype=torch.float64)
    angles[1, 0, 0] = 0.6  # index MCP flexion
    angles[2, 0, 1] = 0.3  # index MCP abduction
    pose = torch.cat([torch.zeros(3, 3, dtype=torch.float64), hand_model.anatomy.to_axis_angle(angles)], 1)
    _, joints = hand_model(pose)
    tip = CANONICAL21.index("index4")
    assert (joints[1, tip] - joints[0, tip]) @ palm_side > 0.03
    thumb_side = joints[0, CANONICAL21.index("thumb1")] - joints[0, 0]
    thumb_side[0] = thumb_side[1] = 0
    assert (joints[2, tip] - joints[0, tip]) @ thumb_side > 0


def test_limit_penalty(hand_model):
    space = hand_model.anatomy
    inside = space.sample(32, seed=1)
    assert torch.all(space.limit_penalty(inside) < 1e-12)
    angles = space.sample_angles(1, seed=2)
    angles[0, 1, 0] = np.deg2rad(150)  # PIP of the index far past 110 degrees
    outside = space.to_axis_angle(angles).requires_grad_(True)
    penalty = space.limit_penalty(outside)
    assert penalty.item() == pytest.approx(np.deg2rad(40) ** 2, rel=1e-6)
    penalty.sum().backward()
    assert torch.isfinite(outside.grad).all() and outside.grad.abs().sum() > 0


def test_sampler_is_deterministic_natural_and_within_limits(hand_model):
    space = hand_model.anatomy
    a, b, c = space.sample_angles(500, 3), space.sample_angles(500, 3), space.sample_angles(500, 4)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    lower, upper = torch.as_tensor(space.lower), torch.as_tensor(space.upper)
    assert torch.all(a >= lower - 1e-12) and torch.all(a <= upper + 1e-12)
    flexion = a[..., 0].reshape(500, 15)
    # Natural poses: the fingers' middle joints close together (strongly correlated).
    correlation = np.corrcoef(flexion[:, [1, 4, 7, 10]].T.numpy())
    assert correlation[np.triu_indices(4, 1)].min() > 0.4


def test_named_poses_close_progressively(hand_model):
    flexion = {name: hand_model.anatomy.named_angles(name)[:, 0].sum().item() for name in ("flat", "relaxed", "fist")}
    assert flexion["flat"] == 0 < flexion["relaxed"] < flexion["fist"]
    with pytest.raises(ValueError, match="unknown pose 'wave'"):
        hand_model.anatomy.named_angles("wave")


def test_pca_of_the_builtin_hand_is_orthonormal(hand_model):
    components = hand_model.hands_components
    np.testing.assert_allclose(components @ components.T, np.eye(45), atol=1e-9)
