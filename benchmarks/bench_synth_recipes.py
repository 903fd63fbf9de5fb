"""Which DDPM recipe paints the most realistic 64 px images in a CPU's half hour?

Run: ``.venv/bin/python benchmarks/bench_synth_recipes.py --train out/demo/real/s0_train
--test out/demo/real/s0_test [--minutes 8] [--recipes "cpu;cpu, cosine noise schedule"] [--parallel 2]``; with
``--sampler-grid MODEL [--grid 10:1,50:1] [--recon RECON]`` it only scores a trained model under each
DPM-Solver++ steps and guidance (default ``SAMPLER_GRID``), and with a reconstructor trained on
the same real data, the condition fidelity of each, with 95% intervals against the first.

Every recipe is the ``cpu`` preset with a few keys changed (``RECIPES``), trained on the same
real training split from the same seed for about ``--minutes`` of wall time (its steps come
from a measured step rate; evaluation not counted), in ``SEGMENTS`` segments: after each, the
model is exported and ``synth eval`` scores it (Fréchet distance of the re-synthesised test
images to the real ones, beside the plain renders' and the real floor's on the same features),
so each recipe gets a curve of distance against training time. (The EMA decay is no lever at
this budget: diffusers' EMA warm-up keeps the decay at 1 - (1 + step)^-2/3, under 0.99 for the
first thousand steps, whatever its cap.) ``--parallel N`` trains N recipes at
once, each on cores / N threads (the times are then per recipe at that thread count).
Writes ``OUT/recipes.json``, the markdown table and ``OUT/frechet_vs_time.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline.boost.intervals import relative_change_interval

SEGMENTS = 3  # evaluations per recipe, evenly spaced in training time
SAMPLER_GRID = ((10, 1.0), (25, 1.0), (50, 1.0), (100, 1.0))  # DPM-Solver++ steps, guidance
EVAL_SAMPLE_STEPS = 10  # DPM-Solver++ steps of the evaluations (the preset samples 50): the sweep's time goes to training
RECIPES: dict[str, dict] = {
    "cpu": {},
    "cpu, attention at 16 px": {"attention_resolutions": [16]},
    "cpu, attention at 16 px, x0 without the texture residual": {"attention_resolutions": [16],
                                                                 "texture_residual": False},
    "cpu, attention at 16 px, background weight 0.1 (the other presets')": {"attention_resolutions": [16],
                                                                            "background_weight": 0.1},
    "cpu, cosine noise schedule": {"beta_schedule": "squaredcos_cap_v2"},
    "cpu, v prediction around the texture map": {"prediction": "v"},
    "cpu, LR decayed to 0 (cosine)": {"lr_schedule": "cosine"},
    "cpu, batch 8 (twice the steps)": {"batch_size": 8},
    "cpu, maps at every resolution": {"maps_every_resolution": True},
    "cpu, two layers a block": {"layers_per_block": 2},
    "cpu, no attention in the middle block": {"middle_attention": False},
    # bf16 is faster only on CPUs with AVX-512 BF16 or AMX, where the preset's auto precision takes it.
    "cpu, fp32": {"mixed_precision": "no"},
    "cpu, bf16 autocast": {"mixed_precision": "bf16"},
}


def step_rate(overrides: dict, train: str, threads: int, steps: int = 8) -> float:
    """Training steps per second of a recipe: two short runs, so that start-up cancels out."""
    import tempfile

    import torch

    from pipeline.synthesis.train import train as train_ddpm

    torch.set_num_threads(threads)
    config = recipe_config(overrides, checkpoint_every=10_000, sample_every=10_000)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (2, 2 + steps):
            started = time.perf_counter()
            train_ddpm(train, Path(tmp) / str(count), config, max_steps=count, progress=False)
            seconds[count] = time.perf_counter() - started
    return steps / max(seconds[2 + steps] - seconds[2], 1e-3)


def recipe_config(overrides: dict, **more):
    from pipeline.config import SynthesisConfig
    from pipeline.synthesis.presets import resolve

    preset = overrides.get("preset", "cpu")
    keys = {key: value for key, value in overrides.items() if key != "preset"}
    return resolve(preset, SynthesisConfig.model_validate({"preset": preset, "num_workers": 0, **keys, **more}))


def run_recipe(name: str, overrides: dict, train: str, test: str, out: str, minutes: float, threads: int,
               seed: int) -> dict:
    """Train ``name`` for ``minutes`` in SEGMENTS segments; the Fréchet distances after each."""
    import torch

    from pipeline.config import PipelineConfig
    from pipeline.synthesis.stage import EvalInputs, synth_eval
    from pipeline.synthesis.train import train as train_ddpm

    torch.set_num_threads(threads)
    rate = step_rate(overrides, train, threads)
    total = max(SEGMENTS, int(rate * minutes * 60))
    segment = total // SEGMENTS
    folder = Path(out) / slug(name)
    config = recipe_config(overrides, max_steps=segment * SEGMENTS, checkpoint_every=segment, sample_every=segment,
                           sample_steps=EVAL_SAMPLE_STEPS)
    points, trained = [], 0.0
    for index in range(1, SEGMENTS + 1):
        started = time.perf_counter()
        train_ddpm(train, folder / "train", config, seed=seed, max_steps=segment * index, resume=index > 1,
                   progress=False)
        trained += time.perf_counter() - started
        pipeline = PipelineConfig.model_validate({"seed": seed, "synthesis": config.model_dump(),
                                                  "run": {"progress": False}})
        summary = synth_eval(pipeline, EvalInputs(ckpt=str(folder / "train"), real=test, train=train),
                             folder / f"eval-{segment * index:06d}")
        points.append({"steps": segment * index, "train_seconds": round(trained, 1),
                       **{key: getattr(summary, key) for key in ("frechet_distance", "frechet_distance_plain_renders",
                                                                 "frechet_distance_real_floor")}})
        print(f"{name}: step {segment * index} after {trained:.0f} s: {summary.frechet_distance:.1f}", flush=True)
    return {"name": name, "overrides": overrides, "params_m": round(parameters(config) / 1e6, 2),
            "steps_per_s": round(rate, 3), "images_per_s": round(rate * config.batch_size, 2), "points": points}


def sampler_grid(model: Path, train: str, test: str, out: Path, seed: int, grid=SAMPLER_GRID,
                 recon: str | None = None) -> list[dict]:
    """One trained model's Fréchet distance under each (DPM-Solver++ steps, guidance) of ``grid``.

    With ``recon`` (a reconstructor trained on the same protocol's real data), also the condition
    fidelity: its MPJPE on the re-synthesised test images, the rise over the real ones, and the
    95% interval of each setting's MPJPE change against the first setting's, paired by test row
    and bootstrapped over test sequences (every setting paints from the same noise)."""
    from pipeline.config import PipelineConfig
    from pipeline.synthesis.stage import EvalInputs, synth_eval

    rows, first = [], None
    for steps, guidance in grid:
        config = PipelineConfig.model_validate({"seed": seed, "run": {"progress": False}, "synthesis": {
            "sample_scheduler": "dpm", "sample_steps": steps, "guidance": guidance}})
        started = time.perf_counter()
        folder = out / f"sampler-{steps}-{guidance:g}"
        summary = synth_eval(config, EvalInputs(ckpt=str(model), real=test, train=train, recon=recon), folder)
        row = {"steps": steps, "guidance": guidance, "frechet_distance": summary.frechet_distance,
               "seconds": round(time.perf_counter() - started, 1)}
        if recon is not None:
            errors = resynthesised_errors(recon, folder / "resynthesised", config)
            first = errors if first is None else first
            if list(errors["sample_id"]) != list(first["sample_id"]):
                raise RuntimeError(f"{folder}: its re-synthesised rows are not the first setting's; cannot pair them")
            real = summary.fidelity["real"]["mpjpe"]
            row.update(mpjpe=round(float(errors["mpjpe"].mean()), 3), mpjpe_real=real,
                       rise_percent=round(100 * (float(errors["mpjpe"].mean()) / real - 1), 2),
                       change_ci95=relative_change_interval({0: errors["mpjpe"]}, {0: first["mpjpe"]},
                                                            errors["sequence_id"]))
        rows.append(row)
        print(f"sampler DPM-Solver++ {steps} steps, guidance {guidance:g}: {summary.frechet_distance:.1f}"
              + (f", MPJPE {row['mpjpe']:.1f} ({row['rise_percent']:+.1f}% over real)" if recon else ""), flush=True)
    return rows


def resynthesised_errors(recon: str, images: Path, config) -> dict:
    """The reconstructor's MPJPE (mm) on each re-synthesised row, with the rows' sample and sequence ids."""
    from pipeline.data.manifest import read_columns
    from pipeline.reconstruction.data import recon_dataset
    from pipeline.reconstruction.filter import row_errors
    from pipeline.reconstruction.models import load_reconstructor

    model = load_reconstructor(recon)
    errors = row_errors(model, recon_dataset(str(images), model.config.image_size),
                        procrustes=config.reconstruction.procrustes)
    _, table = read_columns(str(images), ["sample_id", "sequence_id"])
    if table.column("sample_id").to_pylist() != list(errors["sample_id"]):
        raise RuntimeError(f"{images}: the reconstructor's rows are not the dataset's in order")
    return {"sample_id": errors["sample_id"], "mpjpe": errors["mpjpe"],
            "sequence_id": table.column("sequence_id").to_numpy(zero_copy_only=False)}


def parse_grid(text: str) -> tuple[tuple[int, float], ...]:
    """``"10:1,25:1"`` -> ((10, 1.0), (25, 1.0))."""
    pairs = [item.split(":") for item in text.split(",") if item]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected STEPS:GUIDANCE pairs separated by commas, got {text!r}")
    return tuple((int(steps), float(guidance)) for steps, guidance in pairs)


def print_grid(rows: list[dict]) -> None:
    fidelity = "mpjpe" in rows[0]
    print("\n| DPM-Solver++ steps | guidance | Fréchet | " + ("MPJPE re-synthesised (real) | rise | "
          "change vs first [95% CI] | " if fidelity else "") + "eval s |")
    print("|---:|---:|---:|" + ("---:|---:|---:|" if fidelity else "") + "---:|")
    for row in rows:
        cells = [str(row["steps"]), f"{row['guidance']:g}", f"{row['frechet_distance']:.1f}"]
        if fidelity:
            low, high = row["change_ci95"]
            change = 100 * (row["mpjpe"] / rows[0]["mpjpe"] - 1)
            cells += [f"{row['mpjpe']:.1f} ({row['mpjpe_real']:.1f})", f"{row['rise_percent']:+.1f}%",
                      f"{change:+.1f}% [{low:+.1f}, {high:+.1f}]"]
        print("| " + " | ".join(cells + [str(row["seconds"])]) + " |")


def parameters(config) -> int:
    from pipeline.synthesis.model import HandObjectUNet

    return sum(p.numel() for p in HandObjectUNet.from_synthesis_config(config).parameters())


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]


def plot(results: list[dict], where: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for result in results:
        minutes = [p["train_seconds"] / 60 for p in result["points"]]
        axes.plot(minutes, [p["frechet_distance"] for p in result["points"]], marker="o", label=result["name"])
    first = results[0]["points"][-1]
    axes.axhline(first["frechet_distance_plain_renders"], color="grey", linestyle="--", label="plain renders")
    axes.axhline(0.5 * first["frechet_distance_plain_renders"], color="grey", linestyle=":",
                 label="target: 0.5 x plain renders")
    if first["frechet_distance_real_floor"] is not None:
        axes.axhline(first["frechet_distance_real_floor"], color="black", linestyle="-.", label="real floor")
    axes.set_xlabel("training wall time, minutes")
    axes.set_ylabel("Fréchet distance to real test (Lite0 features)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(where, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True, help="real training split (images and maps)")
    parser.add_argument("--test", required=True, help="real test split of the same protocol")
    parser.add_argument("--out", default="out/bench_synth_recipes")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall time per recipe")
    parser.add_argument("--recipes", default=None, help="RECIPES names, separated by ';' (default: all)")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler-grid", default=None, metavar="MODEL",
                        help="only score a trained model (a synth train folder) under each sampler setting")
    parser.add_argument("--grid", type=parse_grid, default=SAMPLER_GRID, metavar="STEPS:GUIDANCE,...",
                        help="the sampler settings of --sampler-grid; the first is the baseline of the intervals")
    parser.add_argument("--recon", default=None, help="with --sampler-grid: a reconstructor trained on the real "
                                                       "training split, for condition fidelity")
    args = parser.parse_args()
    if args.sampler_grid:
        rows = sampler_grid(Path(args.sampler_grid), args.train, args.test, Path(args.out), args.seed, args.grid,
                            args.recon)
        (Path(args.out) / "samplers.json").write_text(json.dumps(rows, indent=2))
        print_grid(rows)
        return
    wanted = None if args.recipes is None else [name.strip() for name in args.recipes.split(";")]
    unknown = sorted(set(wanted or []) - set(RECIPES))
    if unknown:
        parser.error(f"--recipes: unknown {unknown}; expected names from {sorted(RECIPES)}")
    chosen = {name: value for name, value in RECIPES.items() if wanted is None or name in wanted}
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; "
          f"{args.parallel} recipe(s) at once on {threads} thread(s) each; {args.minutes} min of training each")
    # A process per recipe: accelerate's state (mixed precision) is set once per process.
    with ProcessPoolExecutor(args.parallel, max_tasks_per_child=1) as pool:
        results = list(pool.map(run_recipe, chosen, chosen.values(), *[[value] * len(chosen) for value in (
            args.train, args.test, str(out), args.minutes, threads, args.seed)]))
    (out / "recipes.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "frechet_vs_time.png")
    reference = results[0]["points"][-1]
    print(f"\nreferences on the same features: plain renders {reference['frechet_distance_plain_renders']:.1f}, "
          f"real floor {reference['frechet_distance_real_floor']:.1f}\n")
    print("| recipe | params M | train images/s | steps | minutes | Fréchet | vs plain renders | best Fréchet |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        last = result["points"][-1]
        best = min(p["frechet_distance"] for p in result["points"])
        print(f"| {result['name']} | {result['params_m']} | {result['images_per_s']} | {last['steps']} | "
              f"{last['train_seconds'] / 60:.1f} | {last['frechet_distance']:.1f} | "
              f"{last['frechet_distance'] / last['frechet_distance_plain_renders']:.2f} | {best:.1f} |")


if __name__ == "__main__":
    main()
