"""Grasp benchmark: validated grasps per second over the embedded library, pass rates, values, diversity.

Run: ``.venv/bin/python benchmarks/bench_grasp.py [--per-object 64] [--objects builtin] [--device cpu]``.
Baselines measured in the same run: the optimiser's starting hands (one step), validated the
same way, which says what the optimisation adds; the old optimiser (DexGraspNet's: hull starts
with a uniform roll, no population moves, no closing step); and each lever added on its own
(``--levers``), which says what it adds. Per object: acceptance of old and new, each check's
pass rate and the diversity (mean pairwise joint distance of the accepted grasps) of both,
and the ratios new / old. Writes the grasp datasets and the reports (report.json,
histograms.png, contact_sheet.png) under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from grasp_sim.report import grasp_report
from grasp_sim.stage import GraspInputs, grasps
from pipeline.config import PipelineConfig, with_overrides


def run_grasps(objects: str, out: Path, per_object: int, config: PipelineConfig, device: str, progress: bool = True):
    library, _, names = objects.rpartition(":") if ":" in objects else (objects, "", "")
    config = with_overrides(config, {"objects.library": library, "grasp.per_object": per_object, "run.device": device,
                                     "run.progress": progress, "run.overwrite": True})
    return grasps(config, GraspInputs(objects=[n for n in names.split(",") if n] or None), out)


def measure(label: str, objects: str, out: Path, per_object: int, config: PipelineConfig, device: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_grasps(objects, out, per_object, config, device)
    seconds = time.perf_counter() - started
    from renderers.sheet import grasp_sheet

    report = grasp_report(out, out / "report", sheet=grasp_sheet)
    return {"label": label, "seconds": seconds, "grasps": summary["grasps"], "accepted": summary["accepted"],
            "report": report}


OLD = {"grasp.close_fingers": False, "grasp.population_moves": 0, "grasp.init_object_aware": False,
       "grasp.init_opening": 0.5, "grasp.stability_early_stop": False}
LEVERS = {  # the old optimiser plus one lever
    "closing": {**OLD, "grasp.close_fingers": True},
    "open object-aware starts": {**OLD, "grasp.init_object_aware": True, "grasp.init_opening": 0.1},
    "population moves": {**OLD, "grasp.population_moves": 2},
    "early-stopping stability test": {**OLD, "grasp.stability_early_stop": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="builtin")
    parser.add_argument("--per-object", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--levers", action="store_true", help="also run the old optimiser plus each lever alone")
    parser.add_argument("--out", default="/tmp/handbooster_bench_grasp")
    args = parser.parse_args()
    config = with_overrides(PipelineConfig(), {"grasp.iterations": args.iterations,
                                               "grasp.batch_size": args.batch_size})
    one_step = with_overrides(config, {"grasp.iterations": 1})
    out = Path(args.out)
    # Resting poses, SDF grids and convex pieces are cached per object: warm them outside the timing.
    run_grasps(args.objects, out / "warm", 1, one_step, args.device, progress=False)
    steps = config.grasp.iterations
    results = [
        measure("starting hands (1 step)", args.objects, out / "baseline", args.per_object, one_step, args.device),
        measure(f"old ({steps})", args.objects, out / "old", args.per_object, with_overrides(config, OLD),
                args.device),
        measure(f"new ({steps})", args.objects, out / "optimised", args.per_object, config, args.device),
    ]
    levers = [measure(f"old + {name}", args.objects, out / name.replace(" ", "_"), args.per_object,
                      with_overrides(config, overrides), args.device)
              for name, overrides in LEVERS.items()] if args.levers else []
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\nmachine: {device}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
          f"batch {config.grasp.batch_size}, {args.per_object} grasps per object")
    header = f"{'':26s} {'grasps':>7s} {'accepted':>9s} {'rate':>6s} {'s':>8s} {'grasps/s':>9s} {'accepted/s':>11s}"
    print(header)
    for r in results + levers:
        print(f"{r['label']:26s} {r['grasps']:7d} {r['accepted']:9d} {r['accepted'] / r['grasps']:6.1%} "
              f"{r['seconds']:8.1f} {r['grasps'] / r['seconds']:9.2f} {r['accepted'] / r['seconds']:11.3f}")
    base, old, optimised = results
    if base["accepted"]:
        print(f"accepted grasps per second, optimised / starting hands: "
              f"{(optimised['accepted'] / optimised['seconds']) / (base['accepted'] / base['seconds']):.2f}x")
    if old["accepted"]:
        print(f"new / old: acceptance {optimised['accepted'] / old['accepted']:.2f}x, accepted grasps per second "
              f"{(optimised['accepted'] / optimised['seconds']) / (old['accepted'] / old['seconds']):.2f}x")
    print("pass rate per check, old: " + ", ".join(f"{k} {v:.1%}" for k, v in old["report"]["overall"]["pass_rate"]
                                                   .items()))
    print("\npass rate per check (optimised):")
    overall = optimised["report"]["overall"]
    print("  " + ", ".join(f"{k} {v:.1%}" for k, v in overall["pass_rate"].items()))
    print("accepted grasps' values (p10 / p50 / p90):")
    for column, stats in overall["accepted_values"].items():
        print(f"  {column:26s} " + " / ".join(f"{v:g}" for v in stats.values()))
    print(f"\n{'object':18s} {'old':>9s} {'new':>9s} {'contact':>8s} {'inters.':>8s} {'self-pen':>9s} {'stable':>7s} "
          f"{'div. old':>9s} {'div. new':>9s}")
    for name, entry in optimised["report"]["objects"].items():
        rates, before = entry["pass_rate"], old["report"]["objects"][name]
        print(f"{name:18s} {before['accepted']:4d}/{before['grasps']:<4d} {entry['accepted']:4d}/{entry['grasps']:<4d} "
              f"{rates['contact']:8.0%} {rates['intersection']:8.0%} {rates['self_penetration']:9.0%} "
              f"{rates['stability']:7.0%} {before.get('diversity_mm', float('nan')):9.1f} "
              f"{entry.get('diversity_mm', float('nan')):9.1f}")
    rates = {name: entry["accepted"] / entry["grasps"] for name, entry in optimised["report"]["objects"].items()}
    ratios = [entry["diversity_mm"] / old["report"]["objects"][name]["diversity_mm"]
              for name, entry in optimised["report"]["objects"].items()
              if entry.get("diversity_mm") and old["report"]["objects"][name].get("diversity_mm")]
    print(f"\nobjects at 25% or more (new): {sum(r >= 0.25 for r in rates.values())} of {len(rates)}; lowest "
          f"{min(rates, key=rates.get)} {min(rates.values()):.0%}")
    if ratios:
        print(f"diversity new / old over {len(ratios)} objects with 2+ accepted grasps in both: median "
              f"{sorted(ratios)[len(ratios) // 2]:.2f}, lowest {min(ratios):.2f}")
    print(f"\nreports: {out / 'optimised' / 'report'}, {out / 'baseline' / 'report'}")


if __name__ == "__main__":
    main()
