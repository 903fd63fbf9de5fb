"""The boost experiment at benchmark size: does the synthetic data make the reconstructor better?

Run: ``.venv/bin/python benchmarks/bench_boost.py [--size cpu|gpu] [--out out/bench_boost_SIZE]
[--seeds 0,1,2,3,4] [--protocols s0,s1] [--device cpu|cuda] [--also diffhand:real_only,plain_renders,full,oracle]``. The
run is the ``boost`` flow (``handbooster run boost``) in a fresh process, resumable: run the same
command again after an interruption. ``--also MODEL:ARMS`` then trains another reconstructor on
the same real and synthetic data of each protocol (the experiment stage into
``PROTOCOL/experiment-MODEL/``): does the data help a diffusion reconstructor too?

Both demo protocols are run, each on its own: s0 (s0_train -> s0_test, seen subjects) and s1
(s1_train -> s1_test, the unseen subject). Sizes: ``cpu`` the ``bench`` demo (8 objects, 6
subjects, 4 sequences each: 32 test sequences per protocol, each closing into its own grasp: the
demo's grasp rounds go on until each object has 16 accepted grasps), the ``cpu`` DDPM preset
(64 px, its default steps: about 30 minutes on 2 cores), MobRecon-style tiny reconstructors with
the shipped ImageNet Lite0 encoder, 5 seeds (3 for the sampler-ablation arms: novel grasps drawn
at random, by FPS), K = 256 synthetic rows per arm; ``gpu`` the medium demo, the small DDPM (64 px) trained 20000 steps
and the paper-size MobRecon, 5 seeds.

Printed per protocol: every arm's root-relative and Procrustes-aligned joint error on each test
split, mean and spread over the seeds, the change against real only with its 95% interval
(hierarchical bootstrap over seeds, paired, and test sequences), the reference rows (constant
predictor, nearest training pose), whether real only learned from the images, whether the filter's
reconstructor keeps fewer test rows with their images swapped between sequences than intact ones, the paper's
target (the full method beats real only by at least 6.7% RR J-PE on s0, its Table 5) and its
verdict (met, refuted or unresolved by the interval); the filter's rounds and pass rate; the
Fréchet distance of the DDPM's images to the real test images against two baselines of the
same run; the distinct test grasps; what an interval of +-3.5% for the full method would take
(more seeds, more test sequences) and cost; the seconds of each kind of step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {
    "cpu": {
        "demo": {"size": "bench"},
        # 64 attempts at 100 steps accept about 45% (2026-12-06): more than the N = 24 grasps per object that
        # farthest pose sampling keeps, of which cross-distribution sampling draws each object's share of
        # total (12): the random, FPS and cross samplers pick different grasps.
        "grasp": {"per_object": 64, "iterations": 100, "batch_size": 16},
        "sampling": {"real_per_object": 8, "synthetic_per_object": 24, "total": 96, "views_per_pose": 4},
        # 64 px at the preset's fp32 step count: 29 minutes in fp32, 14 in bf16 (the preset's own bf16 default,
        # 2,800 steps, would add a quarter of an hour per protocol to a run that has 2.5 hours for both), and
        # 10 DPM-Solver++ steps: the preset's 50 paint about 1,100 images a protocol 18 minutes slower.
        "synthesis": {"preset": "cpu", "max_steps": 1300, "sample_steps": 10, "num_workers": 0},
        "reconstruction": {"preset": "tiny", "backbone": "lite0", "max_steps": 800, "eval_every": 400,
                           "checkpoint_every": 400, "num_workers": 0},
        # The paper's sampler ablation (novel grasps drawn at random, by FPS) on 3 of the 5 seeds.
        "boost": {"seeds": [0, 1, 2, 3, 4], "synthetic_count": 256, "demo_protocols": ["s0", "s1"],
                  "arms": ["real_only", "plain_renders", "random_grasps", "fps_grasps", "full", "oracle"],
                  "arm_seeds": {"random_grasps": [0, 1, 2], "fps_grasps": [0, 1, 2]}},
    },
    "gpu": {
        "demo": {"size": "medium"},
        "grasp": {"per_object": 64, "iterations": 500, "batch_size": 64},
        "sampling": {"real_per_object": 32, "synthetic_per_object": 128, "total": 2048, "views_per_pose": 4},
        "synthesis": {"preset": "small", "max_steps": 20000, "checkpoint_every": 5000, "sample_every": 5000,
                      "sample_steps": 25},
        "reconstruction": {"preset": "paper", "max_steps": 20000, "eval_every": 5000, "checkpoint_every": 5000},
        "boost": {"seeds": [0, 1, 2, 3, 4], "synthetic_count": 2048, "demo_protocols": ["s0", "s1"]},
    },
}
TARGET_PCT = -6.7  # the paper's Table 5: full method vs baseline, RR J-PE on the DexYCB test split


def bench_config(size: str, seeds: list[int] | None, device: str, protocols: list[str] | None = None) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config["name"] = f"bench_boost_{size}"
    config.update({section: dict(values) for section, values in SIZES[size].items()})  # whole sections
    if seeds:  # the ablation arms keep those of their seeds that remain, or the first
        config["boost"]["seeds"] = seeds
        config["boost"]["arm_seeds"] = {arm: [s for s in chosen if s in seeds] or seeds[:1]
                                        for arm, chosen in config["boost"].get("arm_seeds", {}).items()}
    if protocols:
        config["boost"]["demo_protocols"] = protocols
    config["run"] = {**config.get("run", {}), "device": device}
    return config


def other_model(config_path: Path, out: Path, protocol: str, spec: str) -> tuple[str, dict]:
    """The experiment stage for another reconstructor on one protocol's real and synthetic data."""
    from pipeline.boost.stage import ExperimentInputs, experiment
    from pipeline.config import load_config, with_overrides

    model, _, arms = spec.partition(":")
    paths = json.loads((out / "boost_summary.json").read_text())["paths"][protocol]
    data, chosen = paths["arm_data"], paths["protocol"]
    arms = [arm for arm in (arms.split(",") if arms else list(data)) if arm in data]
    config = with_overrides(load_config(config_path), {"reconstruction.model": model, "boost.arms": arms,
                                                       "run.progress": False}, source="bench_boost")
    folder = out / protocol / f"experiment-{model}"
    experiment(config, ExperimentInputs(real=chosen["train"], tests=chosen["tests"],
                                        synthetic=[data[arm] for arm in arms], synthesizer_train=paths["train_maps"],
                                        filter_train=chosen["train"], protocol=protocol,
                                        note=f"{model}: tiny preset, the flow's synthetic data"), folder)
    return model, json.loads((folder / "boost_report.json").read_text())


def filter_check(config_path: Path, out: Path, protocol: str) -> dict:
    """Whether the filter's reconstructor tells a wrong image from a right one: the filter (its
    model and auto thresholds, as the flow ran it) over the protocol's test rows, intact and with
    every image moved half the split on (another sequence's frame). The bar: it keeps at most
    half as many swapped rows as intact ones."""
    from pipeline.boost.arms import arm_run
    from pipeline.boost.swap import write_swapped
    from pipeline.config import load_config, with_overrides
    from pipeline.data.reader import ShardDataset
    from pipeline.reconstruction.stage import FilterInputs, recon_filter

    paths = json.loads((out / "boost_summary.json").read_text())["paths"][protocol]
    train, test = paths["protocol"]["train"], paths["protocol"]["tests"][0]
    seed = json.loads((out / protocol / "experiment" / "boost_report.json").read_text())["seeds"][0]
    ckpt = str(arm_run(out / protocol / "experiment", "real_only", seed) / "train")  # the flow's filter model
    config = with_overrides(load_config(config_path), {"run.progress": False}, source="bench_boost")
    folder = out / protocol / "filter_check"
    swapped = folder / "swapped_test"
    if not (swapped / ".manifest.json").exists():
        write_swapped(test, swapped, len(ShardDataset(test, decode=False)) // 2)
    kept = {name: recon_filter(config, FilterInputs(ckpt=ckpt, data=data, val=train), folder / name)
            for name, data in (("intact", test), ("swapped", str(swapped)))}
    rates = {name: summary.pass_rate for name, summary in kept.items()}
    return {**rates, "ratio": round(rates["swapped"] / rates["intact"], 3) if rates["intact"] else None,
            "thresholds": kept["intact"].thresholds}


def verdict(interval: list[float] | None, seeds: int) -> str:
    """The paper's claim (full beats real only by at least 6.7%) against the 95% interval."""
    from pipeline.boost.intervals import MIN_SEEDS

    if interval is None:
        return "unresolved (no interval)"
    if seeds < MIN_SEEDS:
        return "unresolved (one seed: its interval leaves out the training's own noise)"
    if interval[1] <= TARGET_PCT:
        return "holds (the whole interval is at or below the target)"
    if interval[0] > TARGET_PCT:
        return "refuted (the whole interval is above the target)"
    return "unresolved (the interval spans the target)"


def distinct_test_grasps(out: Path) -> dict:
    """The grasps each demo test split closes into (from its manifest's generator record)."""
    found = {}
    for split in ("s0_test", "s1_test"):
        manifest = out / "real" / split / ".manifest.json"
        if manifest.exists():
            found[split] = len(json.loads(manifest.read_text()).get("grasp_ids", []))
    return found


def novel_grasp_overlap(out: Path, protocol: str) -> str:
    """Which novel grasps each pose-sampling variant chose, and how many two variants share: the
    sampler-ablation arms measure something only where the samplers choose differently."""
    from pipeline.data.manifest import read_columns

    chosen = {}
    for specs in sorted((out / protocol / "specs").glob("*/.manifest.json")):
        _, table = read_columns(specs.parent, ["sample_id", "origin"])
        chosen[specs.parent.name] = {row["sample_id"] for row in table.to_pylist() if row["origin"] == "sim_grasp"}
    names = [name for name in chosen if chosen[name]]
    if len(names) < 2:
        return ""
    lines = ["| novel grasps shared | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for first in names:
        lines.append(f"| {first} ({len(chosen[first])}) | " + " | ".join(
            str(len(chosen[first] & chosen[second])) for second in names) + " |")
    return "\n".join(lines)


POWER_SEEDS = (5, 10, 20, 40)
POWER_SCALES = (1, 2, 4)  # times the test sequences
POWER_HALF_WIDTH = 3.5  # the target: the full method's interval against real only at most +-3.5%


def power(out: Path, name: str, report: dict, arm: str = "full") -> str:
    """What an interval of +-POWER_HALF_WIDTH% for ``arm`` against real only (RR J-PE, first test)
    would take: the half width projected from this run's seeds and sequences to more of each,
    and what the seeds cost in training time (every arm trains once more per seed)."""
    from pipeline.boost.arms import arm_run
    from pipeline.boost.intervals import projected_half_widths
    from pipeline.boost.report import per_sample_errors, test_sequences

    if arm not in report["table"]:
        return ""
    test, where = report["tests"][0], report["protocol"]["tests"][0]
    ids, sequences = test_sequences(where)
    root, seeds = out / name / "experiment", report["seeds"]

    def root_relative(run: Path) -> np.ndarray:  # per-sample RR J-PE in the test set's row order
        rows = per_sample_errors(run, test)
        return np.array([rows[i][0] for i in ids])

    errors = {a: {seed: root_relative(arm_run(root, a, seed)) for seed in seeds} for a in (arm, "real_only")}
    widths = projected_half_widths(errors[arm], errors["real_only"], sequences, POWER_SEEDS, POWER_SCALES)
    every_seed = [a for a, per_test in report["table"].items() if per_test[test]["seeds"] == len(seeds)]
    train_s = np.mean([json.loads((arm_run(root, a, seed) / "train" / ".summary.json").read_text())["seconds"]
                       for a in every_seed for seed in seeds])
    count = len(np.unique(sequences))
    lines = [f"Half width of the 95% interval of {arm} against real only (RR, {test}), projected from "
             f"{len(seeds)} seeds and {count} test sequences; a seed costs {len(every_seed)} trainings (the arms "
             f"trained on every seed), {len(every_seed) * train_s / 60:.0f} min here.", "",
             "| seeds | " + " | ".join(f"{scale * count} sequences" for scale in POWER_SCALES) + " | training h |",
             "|---:|" + "---:|" * (len(POWER_SCALES) + 1)]
    for seeds_count in POWER_SEEDS:
        cells = [f"±{widths[seeds_count, scale]:.1f}%" + ("*" if widths[seeds_count, scale] <= POWER_HALF_WIDTH
                                                          else "") for scale in POWER_SCALES]
        hours = seeds_count * len(every_seed) * train_s / 3600
        lines.append(f"| {seeds_count} | " + " | ".join(cells) + f" | {hours:.1f} |")
    lines.append(f"* within ±{POWER_HALF_WIDTH}%.")
    return "\n".join(lines)


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


def run_boost(command: list[str]) -> None:
    """Run the flow in a child process; a SIGTERM or Ctrl-C to this one reaches the child, which
    ends its run and its own processes (the same command resumes), and this one waits for it."""
    child = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # the terminal sent SIGINT to the child too
            continue
    if code:
        sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--out", default=None, help="run folder (default: out/bench_boost_SIZE)")
    parser.add_argument("--seeds", default=None, help="comma-separated reconstructor seeds (default: the size's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--protocols", default=None,
                        help="comma-separated demo protocols (default: s0,s1); a later run with more reuses these")
    parser.add_argument("--also", action="append", default=[], metavar="MODEL[:ARM,ARM]",
                        help="another reconstructor trained on the same data (e.g. diffhand:real_only,full)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    out = Path(args.out or f"out/bench_boost_{args.size}")
    out.mkdir(parents=True, exist_ok=True)
    config_path = out.parent / f"{out.name}.yaml"
    protocols = args.protocols.split(",") if args.protocols else None
    config_path.write_text(yaml.safe_dump(bench_config(args.size, seeds, args.device, protocols), sort_keys=False))

    started = time.perf_counter()
    handbooster = Path(sys.executable).parent / "handbooster"
    run_boost([str(handbooster), "run", "boost", "--config", str(config_path), "--out", str(out)])
    wall = time.perf_counter() - started
    summary = json.loads((out / "boost_summary.json").read_text())
    reports = json.loads((out / "boost_report.json").read_text())["protocols"]
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, device {args.device}; size {args.size}; "
          f"wall {wall:.0f} s (flow {summary['seconds']} s, {summary['reused_steps']} of {len(summary['steps'])} "
          f"steps reused); distinct test grasps {distinct_test_grasps(out)}\n")
    for name, report in reports.items():
        print(f"## protocol {name}: seeds {report['seeds']}; K = {report['synthetic_count']}\n")
        print((out / name / "experiment" / "boost_report.md").read_text())
        test = report["tests"][0]
        full = report["table"].get("full", {}).get(test)
        if full and full["rr_change_pct"] is not None:
            print(f"target: full vs real only on {test} RR J-PE <= {TARGET_PCT}%: {full['rr_change_pct']:+.2f}% "
                  f"{full['rr_change_ci95']} -> {verdict(full['rr_change_ci95'], full['seeds'])}")
        print(f"informative (real only <= {report['informative'][test]['at_most']} x constant): "
              f"{report['informative'][test]}")
        filtered = summary["protocols"][name]["filter"]
        if filtered:
            last = filtered["last_round"]
            print(f"filter: {filtered['kept']} kept of K = {filtered['wanted']} in {filtered['rounds']} round(s); "
                  f"last round pass rate {last['pass_rate']:.3f}; thresholds (mm) {last['thresholds']}")
        check = filter_check(config_path, out, name)
        print(f"filter check on {test}: keeps {check['intact']:.3f} of intact rows, {check['swapped']:.3f} with "
              f"images swapped between sequences (ratio {check['ratio']}; the bar: at most 0.5)")
        print("\n" + power(out, name, report) + "\n")
        print(novel_grasp_overlap(out, name) + "\n")
        synth_eval = json.loads((out / name / "synth_eval" / "synth_eval.json").read_text())
        if synth_eval.get("fidelity"):
            print(f"condition fidelity (filter reconstructor's mean errors, mm): {synth_eval['fidelity']}")
        ddpm = synth_eval["frechet_distance"]
        print(f"\n| images vs real {test} | Fréchet distance (Lite0 features) | vs DDPM |\n|---|---:|---:|")
        for label, key in (("DDPM re-synthesised test conditions", "frechet_distance"),
                           ("plain renders (texture as image)", "frechet_distance_plain_renders"),
                           ("real training split (floor)", "frechet_distance_real_floor")):
            if synth_eval.get(key) is not None:
                print(f"| {label} | {synth_eval[key]:.2f} | {synth_eval[key] / ddpm:.2f}x |")
        print()
    print("\n| step | tasks | seconds |\n|---|---:|---:|")
    for stage, (seconds, count) in sorted(step_seconds(summary).items(), key=lambda kv: -kv[1][0]):
        print(f"| {stage} | {count} | {seconds} |")
    for spec in args.also:
        for name in reports:
            started = time.perf_counter()
            model, _ = other_model(config_path, out, name, spec)
            print(f"\n{model} on protocol {name}'s data ({time.perf_counter() - started:.0f} s):\n")
            print((out / name / f"experiment-{model}" / "boost_report.md").read_text())


if __name__ == "__main__":
    main()
