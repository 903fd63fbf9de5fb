"""The closing step: fingers flex until they touch the object, never into another finger."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import GraspConfig
from pipeline.hand.joints import JOINT_PART


@pytest.fixture(scope="module")
def optimised(hand_model):
    """A few hands optimised briefly around the tennis ball, before closing."""
    from grasp_sim.hand_geometry import build_hand_geometry
    from grasp_sim.resting import find_resting_poses
    from grasp_sim.stage import optimise_batch
    from pipeline.objects import load_object_library

    ball = load_object_library("builtin")["tennis_ball"]
    geometry = build_hand_geometry(hand_model)
    batch = optimise_batch(ball, hand_model, geometry, find_resting_poses(ball, drops=4), 6, seed=5,
                           config=GraspConfig(iterations=60, close_fingers=False))
    params = torch.cat([batch["trans"], batch["pose"][:, :3],
                        hand_model.anatomy.from_axis_angle(batch["pose"][:, 3:]).reshape(-1, 45)], dim=1)
    return ball, geometry, batch, params.to(hand_model.dtype)


def test_closed_fingers_end_in_contact_and_free_fingers_keep_their_angles(optimised, hand_model):
    from grasp_sim.closing import CONTACT_GAP_MM, close_fingers, finger_overlap
    from grasp_sim.energy import hand_pose, split_params

    ball, geometry, batch, params = optimised
    closed, reached = close_fingers(params, hand_model, geometry, batch["betas"], ball.sdf)
    assert reached.any(), "some finger of some hand reaches the ball"
    with torch.no_grad():
        vertices, joints = hand_model(hand_pose(closed, hand_model.anatomy), batch["betas"], closed[:, :3])
        before_vertices, before_joints = hand_model(hand_pose(params, hand_model.anatomy), batch["betas"],
                                                    params[:, :3])
    distance = ball.sdf(vertices)
    parts = torch.as_tensor(np.asarray(hand_model.vertex_parts))
    for finger in range(5):
        nearest = distance[:, parts == finger + 1].amin(dim=1)
        assert (nearest[reached[:, finger]] <= CONTACT_GAP_MM / 1000 + 1e-6).all()
    _, _, angles = split_params(closed)
    _, _, start = split_params(params)
    joint_finger = np.asarray(JOINT_PART[1:]) - 1
    for finger in range(5):
        free = ~reached[:, finger]
        joints_of = torch.as_tensor(joint_finger == finger)
        assert torch.equal(angles[free][:, joints_of], start[free][:, joints_of])
    # closing adds no finger-to-finger overlap beyond the allowance (or what the hand already had)
    allowed = finger_overlap(geometry, before_joints).clamp_min(0.002) + 1e-6
    assert (finger_overlap(geometry, joints) <= allowed).all()


def test_closing_raises_contact_on_the_same_hands(optimised, hand_model):
    from grasp_sim.closing import close_fingers
    from grasp_sim.energy import hand_pose

    ball, geometry, batch, params = optimised
    closed, _ = close_fingers(params, hand_model, geometry, batch["betas"], ball.sdf)
    parts = torch.as_tensor(np.asarray(hand_model.vertex_parts))

    def fingers_touching(p):
        with torch.no_grad():
            vertices, _ = hand_model(hand_pose(p, hand_model.anatomy), batch["betas"], p[:, :3])
        distance = ball.sdf(vertices)
        return sum(int((distance[:, parts == f] <= 0.005).any(dim=1).sum()) for f in range(1, 6))

    assert fingers_touching(closed) >= fingers_touching(params)


def test_wrapping_curls_outer_joints_on_until_they_touch(optimised, hand_model, monkeypatch):
    """With ``wrap``, a joint stops when its own bone or one beyond it touches, not at the
    finger's first touch: its outer joints only ever flex further, and one that flexed further
    ends with its bone, or a bone beyond it, on the surface. (Fingers are let overlap here, so
    that one finger's curl cannot stop another and both runs agree up to each first touch.)"""
    from grasp_sim import closing
    from grasp_sim.closing import CONTACT_GAP_MM, close_fingers
    from grasp_sim.energy import hand_pose, split_params

    monkeypatch.setattr(closing, "OVERLAP_MM", 1e3)

    ball, geometry, batch, params = optimised
    wrapped, reached = close_fingers(params, hand_model, geometry, batch["betas"], ball.sdf, wrap=True)
    stopped, reached_stopping = close_fingers(params, hand_model, geometry, batch["betas"], ball.sdf, wrap=False)
    assert torch.equal(reached, reached_stopping), "the same fingers reach the ball either way"
    flexion = split_params(wrapped)[2][..., 0]
    first_touch = split_params(stopped)[2][..., 0]
    assert (flexion >= first_touch - 1e-9).all()
    further = flexion > first_touch + 1e-9
    assert further.any(), "on some hand a finger's base touches first and its outer joints curl on"
    with torch.no_grad():
        vertices, _ = hand_model(hand_pose(wrapped, hand_model.anatomy), batch["betas"], wrapped[:, :3])
    distance = ball.sdf(vertices)
    bones = torch.as_tensor(np.asarray(hand_model.vertex_joints))
    on_surface = torch.stack([distance[:, bones == joint].amin(dim=1) <= CONTACT_GAP_MM / 1000 + 1e-6
                              for joint in range(1, 16)], dim=1).reshape(-1, 5, 3)
    bone_or_beyond = on_surface.flip(-1).int().cummax(dim=-1).values.flip(-1).bool().reshape(-1, 15)
    assert bone_or_beyond[further].all()


def test_a_finger_pushed_into_the_object_backs_out_and_closes_again_on_the_surface(optimised, hand_model):
    from grasp_sim.closing import RETRACT_DEPTH_MM, close_fingers
    from grasp_sim.energy import hand_pose

    ball, geometry, batch, params = optimised
    closed, reached = close_fingers(params, hand_model, geometry, batch["betas"], ball.sdf)
    hands = reached[:, 1].nonzero().flatten()  # hands whose index finger touches
    assert len(hands), "some index finger reaches the ball"
    pushed = closed[hands].clone()
    index_flexion = [6 + 3 * joint for joint in range(15) if JOINT_PART[joint + 1] == 2]  # its joints' flexion
    pushed[:, index_flexion] += np.deg2rad(40.0)
    betas = batch["betas"][hands]
    parts = torch.as_tensor(np.asarray(hand_model.vertex_parts))

    def index_depth_mm(p):
        with torch.no_grad():
            vertices, _ = hand_model(hand_pose(p, hand_model.anatomy), betas, p[:, :3])
        return -ball.sdf(vertices[:, parts == 2]).amin(dim=1) * 1000

    assert (index_depth_mm(pushed) > RETRACT_DEPTH_MM).any(), "the push takes an index finger into the ball"
    again, reached_again = close_fingers(pushed, hand_model, geometry, betas, ball.sdf)
    assert reached_again[:, 1].all(), "each index finger ends touching"
    assert (index_depth_mm(again) <= RETRACT_DEPTH_MM).all(), "none stays deep inside"
    assert torch.equal(again[:, :6], pushed[:, :6]), "the wrist does not move"
