"""Grasp benchmark: validated grasps per second over the embedded library, pass rates, values, diversity.

Run: ``.venv/bin/python benchmarks/bench_grasp.py [--per-object 64] [--iterations 300,1000]
[--batch-size 16] [--workers 2] [--seed 0] [--objects builtin] [--device cpu] [--levers] [--one-process]``.
Baselines measured in the same run: the optimiser's starting hands (one step), validated the
same way, which says what the optimisation adds; the old optimiser (DexGraspNet's: hull starts
with a uniform roll, no population moves, no closing step, one start per hand) at each step count; the new one
with its population moves ranked by energy (2 moves), as it was before they were ranked by thumb
opposition (at the first step count); and each lever
added on its own (``--levers``), which says what it adds. Per object: acceptance of old and new,
each check's pass rate and the diversity (mean pairwise joint distance of the accepted grasps)
of both, and the ratios new / old. Each batch of an object has its own seed, so the k-th
batches of all objects form one seed's run: acceptance is also given as mean ± std over those
seeds. Writes the grasp datasets and the reports (report.json, histograms.png,
contact_sheet.png) under ``--out``."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
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
            "report": report, "out": out}


OLD = {"grasp.close_fingers": False, "grasp.population_moves": 0, "grasp.init_object_aware": False,
       "grasp.init_opening": 0.5, "grasp.stability_early_stop": False, "grasp.init_candidates": 1}
# The new optimiser as it was before its population moves ranked hands by thumb opposition.
BY_ENERGY = {"grasp.population_rank": "energy", "grasp.population_moves": 2}
LEVERS = {  # the old optimiser plus one lever
    "closing": {**OLD, "grasp.close_fingers": True},
    "open object-aware starts": {**OLD, "grasp.init_object_aware": True, "grasp.init_opening": 0.1},
    "open object-aware starts, 8 tried each": {**OLD, "grasp.init_object_aware": True, "grasp.init_opening": 0.1,
                                               "grasp.init_candidates": 8},
    "population moves": {**OLD, "grasp.population_moves": PipelineConfig().grasp.population_moves},
    "early-stopping stability test": {**OLD, "grasp.stability_early_stop": True},
}


def seed_spread(out: Path, batch_size: int) -> tuple[float, float, int]:
    """Acceptance over all objects for each batch seed (the k-th batch of every object has its
    own seed), as mean and sample standard deviation over the seeds, and their number."""
    from grasp_sim.report import load_grasps

    _, arrays = load_grasps(out)
    batch = np.asarray([int(g.rpartition("/")[2]) // batch_size for g in arrays["grasp_id"]])
    rates = [arrays["accepted"][batch == k].mean() for k in np.unique(batch)]
    return float(np.mean(rates)), float(np.std(rates, ddof=1)) if len(rates) > 1 else float("nan"), len(rates)


def print_runs(runs: list[dict], batch_size: int) -> None:
    header = (f"{'':34s} {'grasps':>7s} {'accepted':>9s} {'rate':>6s} {'seeds: mean ± std':>18s} {'s':>8s} "
              f"{'grasps/s':>9s} {'accepted/s':>11s}")
    print(header)
    for r in runs:
        mean, std, seeds = seed_spread(r["out"], batch_size)
        print(f"{r['label']:34s} {r['grasps']:7d} {r['accepted']:9d} {r['accepted'] / r['grasps']:6.1%} "
              f"{f'{mean:.1%} ± {std:.1%} ({seeds})':>18s} {r['seconds']:8.1f} {r['grasps'] / r['seconds']:9.2f} "
              f"{r['accepted'] / r['seconds']:11.3f}")


def print_comparison(old: dict, new: dict, steps: int) -> None:
    """Old against new at one step count: rates, each check, per object, diversity."""
    print(f"\n== {steps} steps ==")
    if old["accepted"]:
        print(f"new / old: acceptance {new['accepted'] / old['accepted']:.2f}x, accepted grasps per second "
              f"{(new['accepted'] / new['seconds']) / (old['accepted'] / old['seconds']):.2f}x")
    for label, run in (("old", old), ("new", new)):
        print(f"pass rate per check, {label}: " + ", ".join(f"{k} {v:.1%}" for k, v in
                                                          run["report"]["overall"]["pass_rate"].items()))
    print("accepted grasps' values, new (p10 / p50 / p90):")
    for column, stats in new["report"]["overall"]["accepted_values"].items():
        print(f"  {column:26s} " + " / ".join(f"{v:g}" for v in stats.values()))
    print(f"\n{'object':18s} {'old':>9s} {'new':>9s} {'contact':>8s} {'inters.':>8s} {'self-pen':>9s} {'stable':>7s} "
          f"{'div. old':>9s} {'div. new':>9s}")
    for name, entry in new["report"]["objects"].items():
        rates, before = entry["pass_rate"], old["report"]["objects"][name]
        print(f"{name:18s} {before['accepted']:4d}/{before['grasps']:<4d} {entry['accepted']:4d}/{entry['grasps']:<4d} "
              f"{rates['contact']:8.0%} {rates['intersection']:8.0%} {rates['self_penetration']:9.0%} "
              f"{rates['stability']:7.0%} {before.get('diversity_mm', float('nan')):9.1f} "
              f"{entry.get('diversity_mm', float('nan')):9.1f}")
    rates = {name: entry["accepted"] / entry["grasps"] for name, entry in new["report"]["objects"].items()}
    ratios = [entry["diversity_mm"] / old["report"]["objects"][name]["diversity_mm"]
              for name, entry in new["report"]["objects"].items()
              if entry.get("diversity_mm") and old["report"]["objects"][name].get("diversity_mm")]
    print(f"\nobjects at 25% or more (new): {sum(r >= 0.25 for r in rates.values())} of {len(rates)}; lowest "
          f"{min(rates, key=rates.get)} {min(rates.values()):.0%}")
    if ratios:
        print(f"diversity new / old over {len(ratios)} objects with 2+ accepted grasps in both: median "
              f"{sorted(ratios)[len(ratios) // 2]:.2f}, lowest {min(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="builtin", help="LIBRARY or LIBRARY:name,name (e.g. builtin:mug,banana)")
    parser.add_argument("--per-object", type=int, default=64)
    parser.add_argument("--iterations", default="300,1000", help="step counts, comma-separated: old and new at each")
    parser.add_argument("--batch-size", type=int, default=16, help="hands per batch; each batch has its own seed")
    parser.add_argument("--workers", type=int, default=PipelineConfig().run.workers,
                        help="worker processes (run.workers; 0: one process)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--levers", action="store_true", help="also run the old optimiser plus each lever alone "
                                                              "(at the first step count)")
    parser.add_argument("--seed", type=int, default=PipelineConfig().seed, help="run seed (each batch derives its own)")
    parser.add_argument("--one-process", action="store_true", help="also time the new optimiser in one process "
                                                                   "(at the first step count)")
    parser.add_argument("--out", default="/tmp/handbooster_bench_grasp")
    args = parser.parse_args()
    step_counts = [int(n) for n in args.iterations.split(",")]
    config = with_overrides(PipelineConfig(), {"grasp.batch_size": args.batch_size, "run.workers": args.workers,
                                               "seed": args.seed})
    one_step = with_overrides(config, {"grasp.iterations": 1})
    out = Path(args.out)
    # Resting poses, SDF grids and convex pieces are cached per object: warm them outside the timing.
    run_grasps(args.objects, out / "warm", 1, one_step, args.device, progress=False)
    runs = [measure("starting hands (1 step)", args.objects, out / "baseline", args.per_object, one_step,
                    args.device)]
    if args.one_process and args.workers and not args.device.startswith("cuda"):
        in_one = with_overrides(config, {"grasp.iterations": step_counts[0], "run.workers": 0})
        runs.append(measure(f"new ({step_counts[0]} steps), one process", args.objects, out / "one_process",
                            args.per_object, in_one, args.device))
    pairs = []
    for steps in step_counts:
        at = with_overrides(config, {"grasp.iterations": steps})
        pairs.append((steps, measure(f"old ({steps} steps)", args.objects, out / f"old_{steps}", args.per_object,
                                     with_overrides(at, OLD), args.device),
                      measure(f"new ({steps} steps)", args.objects, out / f"new_{steps}", args.per_object, at,
                              args.device)))
        runs += list(pairs[-1][1:])
        if steps == step_counts[0]:
            runs.append(measure(f"new, moves by energy ({steps} steps)", args.objects, out / f"by_energy_{steps}",
                                args.per_object, with_overrides(at, BY_ENERGY), args.device))
    if args.levers:
        at = with_overrides(config, {"grasp.iterations": step_counts[0]})
        runs += [measure(f"old + {name}", args.objects, out / name.replace(" ", "_"), args.per_object,
                         with_overrides(at, overrides), args.device) for name, overrides in LEVERS.items()]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\nmachine: {device}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
          f"batch {args.batch_size}, {args.per_object} grasps per object, {args.workers} worker processes")
    print_runs(runs, args.batch_size)
    base = runs[0]
    one = next((r for r in runs if r["label"].endswith("one process")), None)
    if one and pairs and one["seconds"]:
        print(f"{args.workers} worker processes against one, new at {pairs[0][0]} steps: "
              f"{one['seconds'] / pairs[0][2]['seconds']:.2f}x the grasps per second")
    for steps, old, new in pairs:
        if base["accepted"] and new["accepted"]:
            print(f"accepted grasps per second at {steps} steps, new / starting hands: "
                  f"{(new['accepted'] / new['seconds']) / (base['accepted'] / base['seconds']):.2f}x")
        print_comparison(old, new, steps)
    print(f"\nreports: {out}/*/report")


if __name__ == "__main__":
    main()
