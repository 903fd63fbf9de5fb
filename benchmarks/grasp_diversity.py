"""Diversity of accepted grasps, old optimiser against new, pooled over runs (seeds).

Run: ``.venv/bin/python benchmarks/grasp_diversity.py --old DIR[,DIR...] --new DIR[,DIR...]``,
each DIR a grasp dataset (``handbooster grasp run``'s out, or ``bench_grasp.py``'s arms).

The old optimiser accepts 3-17 grasps of an object per seed, so one seed's diversity of it
(``grasp report``'s ``diversity_mm``) moves by tens of millimetres between seeds; pooling the
seeds' accepted grasps gives each object's figure more pairs. Per object: accepted count and
diversity of both, the ratio new / old, and the diversity split in two, both in mm:
placement (mean pairwise distance of the hands' joint centroids: where on the object the hand
sits) and articulation (the same as diversity, with the wrist at the origin and the global
rotation zeroed: how the fingers are posed). Beside each ratio, its 95% bootstrap interval: the
old optimiser's few grasps make its diversity uncertain, and the interval says whether a ratio
under the floor is resolved.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from grasp_sim.report import articulated_joints, diversity_parts, load_grasps, pairwise_joint_distances
from pipeline.hand import load_hand_model

RATIO_TARGET = 0.8  # the grasp issue's floor for new / old diversity
PARTS = ("diversity_mm", "placement_mm", "articulation_mm")


def pooled_diversity(datasets: list[str], hand_model) -> dict[str, dict]:
    """Per object, the accepted grasps of all ``datasets`` pooled: their count and, for two or
    more, :func:`grasp_sim.report.diversity_parts`."""
    pooled: dict[str, dict[str, list]] = {}
    for where in datasets:
        _, arrays = load_grasps(where)
        for name in sorted(set(arrays["object_id"].tolist())):
            rows = (arrays["object_id"] == name) & arrays["accepted"]
            entry = pooled.setdefault(name, {"joints": [], "articulated": []})
            if not rows.any():
                continue
            pose, betas, trans = (torch.as_tensor(arrays[c][rows]) for c in ("hand_pose", "hand_betas", "hand_trans"))
            with torch.no_grad():
                _, joints = hand_model(pose, betas, trans)
            entry["joints"].append(joints.numpy())
            entry["articulated"].append(articulated_joints(hand_model, pose, betas).numpy())
    result = {}
    for name, entry in pooled.items():
        joints = np.concatenate(entry["joints"]) if entry["joints"] else np.zeros((0, 21, 3))
        result[name] = {"accepted": len(joints), "joints": joints}
        if len(joints) >= 2:
            result[name].update(diversity_parts(joints, np.concatenate(entry["articulated"])))
    return result


def resampled_diversity(distances: np.ndarray, picks: np.ndarray) -> float:
    """The mean pairwise distance of the hands ``picks`` (drawn with replacement), over pairs of
    two different hands: a hand drawn twice is one grasp, not a pair at distance 0."""
    different = picks[:, None] != picks[None]
    return float(distances[np.ix_(picks, picks)][different].mean())


def ratio_interval(old_joints: np.ndarray, new_joints: np.ndarray, draws: int = 2000,
                   seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of new / old diversity, each set's hands resampled on their own;
    None where either set has fewer than 3 hands (a resample of 2 is often one hand twice)."""
    if min(len(old_joints), len(new_joints)) < 3:
        return None
    rng = np.random.default_rng(seed)
    old, new = (pairwise_joint_distances(joints).numpy() for joints in (old_joints, new_joints))
    ratios = []
    while len(ratios) < draws:
        old_picks, new_picks = rng.integers(0, len(old), len(old)), rng.integers(0, len(new), len(new))
        if len(set(old_picks.tolist())) > 1 and len(set(new_picks.tolist())) > 1:
            ratios.append(resampled_diversity(new, new_picks) / resampled_diversity(old, old_picks))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="comma-separated grasp datasets of the old optimiser")
    parser.add_argument("--new", required=True, help="comma-separated grasp datasets of the new optimiser")
    parser.add_argument("--hand", default="builtin")
    args = parser.parse_args()
    hand_model = load_hand_model(args.hand, dtype=torch.float64)
    old = pooled_diversity(args.old.split(","), hand_model)
    new = pooled_diversity(args.new.split(","), hand_model)

    def mm(entry: dict, part: str) -> str:
        return f"{entry[part]:6.1f}" if part in entry else f"{'-':>6s}"

    print(f"{'object':18s} {'old n':>5s} {'old':>6s} {'new n':>5s} {'new':>6s} {'new/old':>7s}   {'95% interval':>12s}  "
          f"{'placement old/new':>17s}   {'articulation old/new':>20s}")
    ratios, resolved_under = [], []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, {"accepted": 0}), new.get(name, {"accepted": 0})
        ratio = after["diversity_mm"] / before["diversity_mm"] if PARTS[0] in before and PARTS[0] in after else None
        interval = ratio_interval(before["joints"], after["joints"]) if ratio is not None else None
        if ratio is not None:
            ratios.append(ratio)
        if interval is not None and interval[1] < RATIO_TARGET:
            resolved_under.append(name)
        flag = " <" if ratio is not None and ratio < RATIO_TARGET else ""
        shown = f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "-"
        print(f"{name:18s} {before['accepted']:5d} {mm(before, PARTS[0])} {after['accepted']:5d} "
              f"{mm(after, PARTS[0])} {(f'{ratio:.2f}' if ratio is not None else '-'):>7s}{flag:2s} {shown:>12s}  "
              f"{mm(before, PARTS[1])} / {mm(after, PARTS[1])}      {mm(before, PARTS[2])} / {mm(after, PARTS[2])}")
    if ratios:
        print(f"new / old over {len(ratios)} objects with 2+ accepted grasps in both: median "
              f"{statistics.median(ratios):.2f}, under {RATIO_TARGET}: {sum(r < RATIO_TARGET for r in ratios)}; "
              f"whole interval under {RATIO_TARGET}: {', '.join(resolved_under) or 'none'}")


if __name__ == "__main__":
    main()
