"""The grasp report's diversity and its two parts, placement and articulation."""

from __future__ import annotations

import pytest
import torch

from grasp_sim.report import articulated_joints, diversity_parts


def joints_of(hand_model, pose, betas, trans):
    with torch.no_grad():
        _, joints = hand_model(pose, betas, trans)
    return joints.numpy(), articulated_joints(hand_model, pose, betas).numpy()


def test_a_moved_or_turned_hand_changes_placement_and_only_a_bent_finger_changes_articulation(hand_model):
    betas = torch.zeros((2, hand_model.num_betas), dtype=torch.float64)
    pose = torch.zeros((2, 48), dtype=torch.float64)
    trans = torch.zeros((2, 3), dtype=torch.float64)

    moved = trans.clone()
    moved[1, 0] = 0.03  # the second hand 3 cm along x, same pose
    parts = diversity_parts(*joints_of(hand_model, pose, betas, moved))
    assert parts["diversity_mm"] == pytest.approx(30.0, abs=0.01)
    assert parts["placement_mm"] == pytest.approx(30.0, abs=0.01)
    assert parts["articulation_mm"] == pytest.approx(0.0, abs=1e-6)

    turned = pose.clone()
    turned[1, :3] = torch.tensor([0.0, 0.0, 1.0])  # the second hand turned 1 rad about z
    parts = diversity_parts(*joints_of(hand_model, turned, betas, trans))
    assert parts["diversity_mm"] > 10
    assert parts["articulation_mm"] == pytest.approx(0.0, abs=1e-6)

    bent = pose.clone()
    bent[1, 3:] = 0.3  # every finger joint of the second hand flexed
    parts = diversity_parts(*joints_of(hand_model, bent, betas, trans))
    assert parts["articulation_mm"] > 5
    assert parts["articulation_mm"] == pytest.approx(parts["diversity_mm"], abs=0.01)  # the wrist did not move
