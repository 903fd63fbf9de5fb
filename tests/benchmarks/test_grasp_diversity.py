"""The diversity benchmark's interval (benchmarks/grasp_diversity.py) on hands drawn from known spreads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from grasp_sim.report import pairwise_joint_distances

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "grasp_diversity.py"


def load_script():
    spec = importlib.util.spec_from_file_location("grasp_diversity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hands(count: int, spread_m: float, seed: int) -> np.ndarray:
    """``count`` hands of 21 joints, each a random offset (std ``spread_m``) of one fixed hand."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.03, (1, 21, 3))
    return base + rng.normal(0, spread_m, (count, 1, 3)) + rng.normal(0, 0.002, (count, 21, 3))


def test_the_ratio_interval_holds_the_true_ratio_and_excludes_a_wrong_one():
    script = load_script()
    same = script.ratio_interval(hands(12, 0.04, 0), hands(80, 0.04, 1))
    half = script.ratio_interval(hands(12, 0.04, 2), hands(80, 0.02, 3))
    assert same[0] < 1.0 < same[1]
    assert half[0] < 0.5 < half[1] < 1.0  # holds the true ratio (about half) and is resolved below 1
    assert script.ratio_interval(hands(2, 0.04, 4), hands(80, 0.04, 5)) is None  # too few hands to resample


def test_a_hand_drawn_twice_is_not_a_pair():
    script = load_script()
    distances = pairwise_joint_distances(hands(3, 0.04, 6)).numpy()
    picks = np.array([0, 0, 1])
    assert script.resampled_diversity(distances, picks) == distances[0, 1]
