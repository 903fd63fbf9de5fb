"""Candidate starts tried before optimising: slid onto the object, closed, judged by the thumb."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import GraspConfig


@pytest.fixture(scope="module")
def candidates(hand_model):
    """Four candidate starts for each of three hands on the sugar box (consecutive per hand)."""
    from grasp_sim.hand_geometry import build_hand_geometry
    from grasp_sim.initialization import initial_params
    from grasp_sim.resting import find_resting_poses
    from pipeline.objects import load_object_library

    box = load_object_library("builtin")["sugar_box"]
    geometry = build_hand_geometry(hand_model)
    rest = find_resting_poses(box, drops=4)[0].matrix
    rng = np.random.default_rng(3)
    betas = torch.as_tensor(rng.normal(0, 0.5, (3, hand_model.num_betas)), dtype=hand_model.dtype)
    betas = betas.repeat_interleave(4, dim=0)
    params = initial_params(box, geometry, hand_model, betas, np.repeat(rest[None], 12, axis=0), GraspConfig(), rng,
                            pool_for=3)
    return box, geometry, betas, params


def test_thumb_opposition_is_the_most_opposed_finger_and_needs_thumb_and_finger_contact():
    from grasp_sim.pregrasp import thumb_opposition

    parts = np.array([1, 1, 2, 3, 0])  # two thumb vertices, an index, a middle, a palm vertex
    normals = np.array([[1.0, 0, 0], [1.0, 0.2, 0], [0, 1.0, 0], [-1.0, 0, 0], [-1.0, 0, 0]])
    touching = np.zeros(5)
    thumb_mean = normals[:2].mean(0) / np.linalg.norm(normals[:2].mean(0))
    assert thumb_opposition(touching, normals, parts, 0.005) == pytest.approx(-thumb_mean[0])  # the middle finger
    middle_away = np.array([0, 0, 0, 0.01, 0])
    assert thumb_opposition(middle_away, normals, parts, 0.005) == pytest.approx(thumb_mean[1])  # only the index
    assert np.isnan(thumb_opposition(np.array([0.01, 0.01, 0, 0, 0]), normals, parts, 0.005))  # no thumb
    assert np.isnan(thumb_opposition(np.array([0, 0, 0.01, 0.01, 0]), normals, parts, 0.005))  # the palm is no finger


def test_approach_stops_the_step_before_the_hand_touches(candidates, hand_model):
    from grasp_sim.energy import hand_pose
    from grasp_sim.pregrasp import APPROACH_STEP_M, approach

    box, geometry, betas, params = candidates
    moved = approach(params, hand_model, geometry, betas, box.sdf)
    assert torch.equal(moved[:, 3:], params[:, 3:]), "only the translation changes"
    travel = moved[:, :3] - params[:, :3]
    assert (travel.norm(dim=1) > 0).all(), "starts 2-5 cm off the hull, facing it, reach it"
    with torch.no_grad():
        vertices, _ = hand_model(hand_pose(moved, hand_model.anatomy), betas, moved[:, :3])
    nearest = box.sdf(vertices[:, geometry.penetration_vertex_ids]).amin(dim=1)
    assert (nearest > -1e-6).all(), "no hand is pushed into the box"
    direction = travel / travel.norm(dim=1, keepdim=True)
    one_more = box.sdf(vertices[:, geometry.penetration_vertex_ids] + APPROACH_STEP_M * direction[:, None]).amin(dim=1)
    assert (one_more <= 1e-6).all(), "a step further along the palm direction touches (starts face the box)"


def test_the_chosen_start_is_each_hands_best_opposed_candidate(candidates, hand_model):
    from grasp_sim.closing import close_fingers
    from grasp_sim.energy import hand_pose
    from grasp_sim.pregrasp import TRIAL_CLOSE_STEP_DEG, UNOPPOSED, approach, choose_starts, hand_oppositions

    box, geometry, betas, params = candidates
    chosen, opposition = choose_starts(params, hand_model, geometry, betas, box.sdf, 4, 0.005)
    assert chosen.shape == (3, params.shape[1])
    closed, _ = close_fingers(approach(params, hand_model, geometry, betas, box.sdf), hand_model, geometry, betas,
                              box.sdf, step_deg=TRIAL_CLOSE_STEP_DEG)
    with torch.no_grad():
        vertices, _ = hand_model(hand_pose(closed, hand_model.anatomy), betas, closed[:, :3])
    each = hand_oppositions(vertices, box.sdf, np.asarray(hand_model.vertex_parts), 0.005).reshape(3, 4)
    scores = np.where(np.isnan(each), UNOPPOSED, each)
    for hand in range(3):
        best = int(scores[hand].argmin())
        assert torch.equal(chosen[hand], params[4 * hand + best]), "the open start is kept, from its own hand's four"
        assert np.nan_to_num(opposition[hand], nan=UNOPPOSED) == pytest.approx(scores[hand].min())


def test_the_opposition_rank_is_the_trial_closed_hands_opposition_and_moves_no_hand(candidates, hand_model):
    from grasp_sim.closing import close_fingers
    from grasp_sim.energy import hand_pose
    from grasp_sim.pregrasp import TRIAL_CLOSE_STEP_DEG, UNOPPOSED, hand_oppositions, opposition_rank

    box, geometry, betas, params = candidates
    before = params.clone()
    rank = opposition_rank(params, hand_model, geometry, betas, box.sdf, 0.005)
    assert torch.equal(params, before)
    closed, _ = close_fingers(params, hand_model, geometry, betas, box.sdf, step_deg=TRIAL_CLOSE_STEP_DEG)
    with torch.no_grad():
        vertices, _ = hand_model(hand_pose(closed, hand_model.anatomy), betas, closed[:, :3])
    expected = hand_oppositions(vertices, box.sdf, np.asarray(hand_model.vertex_parts), 0.005)
    assert rank.shape == (len(params),) and rank.dtype == params.dtype
    assert np.allclose(rank.numpy(), np.where(np.isnan(expected), UNOPPOSED, expected))
    assert ((rank >= -1) & (rank <= UNOPPOSED)).all()
