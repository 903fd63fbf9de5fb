"""Diversity of accepted grasps, old optimiser against new, pooled over runs (seeds).

Run: ``.venv/bin/python benchmarks/grasp_diversity.py --old DIR[,DIR...] --new DIR[,DIR...]``,
each DIR a grasp dataset (``handbooster grasp run``'s out, or ``bench_grasp.py``'s arms).

The old optimiser accepts 3-17 grasps of an object per seed, so one seed's diversity of it
(``grasp report``'s ``diversity_mm``) moves by tens of millimetres between seeds; pooling the
seeds' accepted grasps gives each object's figure more pairs. Per object: accepted count and
diversity of both, the ratio new / old, and the diversity split in two, both in mm:
placement (mean pairwise distance of the hands' joint centroids: where on the object the hand
sits) and articulation (the same as diversity, with the wrist at the origin and the global
rotation zeroed: how the fingers are posed).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from grasp_sim.report import articulated_joints, diversity_parts, load_grasps
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
        result[name] = {"accepted": len(joints)}
        if len(joints) >= 2:
            result[name].update(diversity_parts(joints, np.concatenate(entry["articulated"])))
    return result


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

    print(f"{'object':18s} {'old n':>5s} {'old':>6s} {'new n':>5s} {'new':>6s} {'new/old':>7s}   "
          f"{'placement old/new':>17s}   {'articulation old/new':>20s}")
    ratios = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, {"accepted": 0}), new.get(name, {"accepted": 0})
        ratio = after["diversity_mm"] / before["diversity_mm"] if PARTS[0] in before and PARTS[0] in after else None
        if ratio is not None:
            ratios.append(ratio)
        flag = " <" if ratio is not None and ratio < RATIO_TARGET else ""
        print(f"{name:18s} {before['accepted']:5d} {mm(before, PARTS[0])} {after['accepted']:5d} "
              f"{mm(after, PARTS[0])} {(f'{ratio:.2f}' if ratio is not None else '-'):>7s}{flag:2s} "
              f"{mm(before, PARTS[1])} / {mm(after, PARTS[1])}      {mm(before, PARTS[2])} / {mm(after, PARTS[2])}")
    if ratios:
        print(f"new / old over {len(ratios)} objects with 2+ accepted grasps in both: median "
              f"{statistics.median(ratios):.2f}, under {RATIO_TARGET}: {sum(r < RATIO_TARGET for r in ratios)}")


if __name__ == "__main__":
    main()
