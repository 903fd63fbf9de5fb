"""The boost experiment at benchmark size: does the synthetic data make the reconstructor better?

Run: ``.venv/bin/python benchmarks/bench_boost.py [--size cpu|gpu] [--out out/bench_boost_SIZE]
[--seeds 0,1] [--device cpu|cuda] [--also diffhand:real_only,plain_renders,full,oracle]``. The run is
the ``boost`` flow (``handbooster boost``) in a fresh process, resumable: run the same command
again after an interruption. ``--also MODEL:ARMS`` then trains another reconstructor on the
same real and synthetic data (the experiment stage into ``experiment-MODEL/``): does the data
help a diffusion reconstructor too?

Sizes: ``cpu`` fits about an hour on the 2-core machine (the small demo, 16 grasps per object,
the tiny DDPM trained 3000 steps, MobRecon-style tiny reconstructors 800 steps per arm and
seed, K = 256 synthetic rows per arm); ``gpu`` the medium demo, the small DDPM (64 px) trained
20000 steps and the paper-size MobRecon, 3 seeds.

Printed: every arm's root-relative and Procrustes-aligned joint error on each test split, mean
and spread (std) over the seeds, the change against real only (the baseline, measured in the
same run) and the paper's target (the full method beats real only by at least 6.7% RR J-PE on
s0_test, its Table 5); the filter's pass rate; the Fréchet distance of the DDPM's images to the
real test images against two baselines of the same run (the real training images, a floor, and
the plain renders, the texture map used as the image); the seconds of each kind of step.
The flow also writes ``experiment/pck.png``, ``filter/*.png`` and ``synth_eval/*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {
    "cpu": {
        "demo": {"size": "small"},
        "grasp": {"per_object": 16, "iterations": 300, "batch_size": 16},
        "sampling": {"real_per_object": 8, "synthetic_per_object": 24, "total": 256, "views_per_pose": 4},
        "synthesis": {"preset": "tiny", "max_steps": 3000, "checkpoint_every": 1000, "sample_every": 1000,
                      "num_workers": 0, "sample_steps": 25},
        "reconstruction": {"preset": "tiny", "max_steps": 800, "eval_every": 400, "checkpoint_every": 400,
                           "num_workers": 0},
        "boost": {"seeds": [0, 1], "synthetic_count": 256},
    },
    "gpu": {
        "demo": {"size": "medium"},
        "grasp": {"per_object": 64, "iterations": 500, "batch_size": 64},
        "sampling": {"real_per_object": 32, "synthetic_per_object": 128, "total": 2048, "views_per_pose": 4},
        "synthesis": {"preset": "small", "max_steps": 20000, "checkpoint_every": 5000, "sample_every": 5000,
                      "sample_steps": 25},
        "reconstruction": {"preset": "paper", "max_steps": 20000, "eval_every": 5000, "checkpoint_every": 5000},
        "boost": {"seeds": [0, 1, 2], "synthetic_count": 2048},
    },
}
TARGET_PCT = -6.7  # the paper's Table 5: full method vs baseline, RR J-PE on the DexYCB test split


def bench_config(size: str, seeds: list[int] | None, device: str) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config["name"] = f"bench_boost_{size}"
    config.update({section: dict(values) for section, values in SIZES[size].items()})  # whole sections
    if seeds:
        config["boost"]["seeds"] = seeds
    config["run"] = {**config.get("run", {}), "device": device}
    return config


def fréchet_baselines(run: Path) -> dict:
    """Fréchet distances to the real test images of the real training images and of the plain renders."""
    from pipeline.synthesis.evaluate import dataset_images, frechet_distance, image_features

    def features(where: Path, limit: int = 512):
        return image_features(dataset_images(str(where), limit))

    test = features(run / "real" / "s0_test")
    out = {"real s0_train (floor)": frechet_distance(features(run / "real" / "s0_train"), test)}
    if (run / "plain_renders").exists():
        out["plain renders (texture as image)"] = frechet_distance(features(run / "plain_renders"), test)
    return out


def other_model(config_path: Path, out: Path, spec: str) -> tuple[str, dict]:
    """The experiment stage for another reconstructor on the flow's real and synthetic data."""
    from pipeline.boost.stage import ExperimentInputs, experiment
    from pipeline.config import load_config, with_overrides

    model, _, arms = spec.partition(":")
    summary = json.loads((out / "boost_summary.json").read_text())
    data = summary["paths"]["arm_data"]
    arms = [arm for arm in (arms.split(",") if arms else list(data)) if arm in data]
    config = with_overrides(load_config(config_path), {"reconstruction.model": model, "boost.arms": arms,
                                                       "run.progress": False}, source="bench_boost")
    folder = out / f"experiment-{model}"
    experiment(config, ExperimentInputs(real=summary["paths"]["real"], tests=summary["paths"]["tests"],
                                        synthetic=[data[arm] for arm in arms],
                                        note=f"{model}: tiny preset, the flow's synthetic data"), folder)
    return model, json.loads((folder / "boost_report.json").read_text())


def step_seconds(summary: dict) -> dict:
    """Seconds per kind of step, as each step's own summary recorded them when it ran (a rerun
    that reuses a step keeps the time of the run that made it)."""
    totals, counts = defaultdict(float), defaultdict(int)
    for row in summary["steps"]:
        recorded = Path(row["out"]) / ".summary.json"
        seconds = json.loads(recorded.read_text())["seconds"] if recorded.exists() else row["seconds"]
        totals[row["stage"]] += seconds
        counts[row["stage"]] += 1
    return {stage: (round(totals[stage], 1), counts[stage]) for stage in totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--out", default=None, help="run folder (default: out/bench_boost_SIZE)")
    parser.add_argument("--seeds", default=None, help="comma-separated reconstructor seeds (default: the size's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--also", action="append", default=[], metavar="MODEL[:ARM,ARM]",
                        help="another reconstructor trained on the same data (e.g. diffhand:real_only,full)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    out = Path(args.out or f"out/bench_boost_{args.size}")
    out.mkdir(parents=True, exist_ok=True)
    config_path = out.parent / f"{out.name}.yaml"
    config_path.write_text(yaml.safe_dump(bench_config(args.size, seeds, args.device), sort_keys=False))

    started = time.perf_counter()
    handbooster = Path(sys.executable).parent / "handbooster"
    subprocess.run([str(handbooster), "run", "boost", "--config", str(config_path), "--out", str(out)], check=True,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - started
    summary = json.loads((out / "boost_summary.json").read_text())
    report = json.loads((out / "experiment" / "boost_report.json").read_text())
    filtered = json.loads((out / "filter" / "report.json").read_text())
    synth_eval = json.loads((out / "synth_eval" / "synth_eval.json").read_text())

    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, device {args.device}; size {args.size}; "
          f"seeds {report['seeds']}; K = {report['synthetic_count']}; wall {wall:.0f} s "
          f"(flow {summary['seconds']} s, {summary['reused_steps']} of {len(summary['steps'])} steps reused)\n")
    print((out / "experiment" / "boost_report.md").read_text())
    full = report["table"].get("full", {}).get(report["tests"][0])
    if full and full["rr_change_pct"] is not None:
        verdict = "met" if full["rr_change_pct"] <= TARGET_PCT else "missed"
        print(f"target: full vs real only on {report['tests'][0]} RR J-PE <= {TARGET_PCT}%: "
              f"{full['rr_change_pct']:+.2f}% -> {verdict}\n")
    print(f"filter: {filtered['kept']} of {filtered['rows']} kept (pass rate {filtered['pass_rate']:.3f}); "
          f"thresholds (mm) {filtered['thresholds']}")
    if synth_eval.get("fidelity"):
        print(f"condition fidelity (filter reconstructor's mean errors, mm): {synth_eval['fidelity']}")
    baselines = fréchet_baselines(out)
    print("\n| images vs real s0_test | Fréchet distance (Lite0 features) | vs DDPM |\n|---|---:|---:|")
    ddpm = synth_eval["frechet_distance"]
    print(f"| DDPM re-synthesised test conditions | {ddpm:.2f} | 1.00x |")
    for name, value in baselines.items():
        print(f"| {name} | {value:.2f} | {value / ddpm:.2f}x |")
    print("\n| step | tasks | seconds |\n|---|---:|---:|")
    for stage, (seconds, count) in sorted(step_seconds(summary).items(), key=lambda kv: -kv[1][0]):
        print(f"| {stage} | {count} | {seconds} |")
    for spec in args.also:
        started = time.perf_counter()
        model, other = other_model(config_path, out, spec)
        print(f"\n{model} on the same data ({time.perf_counter() - started:.0f} s):\n")
        print((out / f"experiment-{model}" / "boost_report.md").read_text())


if __name__ == "__main__":
    main()
