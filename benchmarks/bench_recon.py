"""Reconstructor benchmark: throughput of each model, and what each learns on the demo in a fixed budget.

Run: ``.venv/bin/python benchmarks/bench_recon.py [--demo out/demo/real] [--steps 1500]
[--models mobrecon,handoccnet,m3dhmr,diffhand] [--device cpu|cuda] [--seeds 0]``.

Throughput: images/s of inference and of training (forward + backward + Adam) at each
model's ``paper`` input size and width (MobRecon 128 px, HandOccNet 256 px) and at ``tiny``,
batch 32, against baselines measured in the same run: the encoder alone (how much the
decoder adds) and the MobRecon-style model at the same preset. The diffusion model's
inference is its whole DDIM-10 sampling. Target: the MobRecon-style model infers >= 200 images/s at 128 px on
the 2-core CPU (the edge-case filter must never be the slow stage).

Quality: each model (``tiny`` preset) trained ``--steps`` steps on the demo's ``s0_train``
(a fixed CPU budget), evaluated on ``s0_test`` and ``s1_test`` with the official metrics;
the wall time of each. The demo is built (``handbooster data demo --size small``) if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import PipelineConfig, ReconstructionConfig, with_overrides  # noqa: E402
from pipeline.reconstruction.presets import resolve  # noqa: E402
from pipeline.reconstruction.train import build_model  # noqa: E402


def rate(func, images: int, repeats: int = 3) -> float:
    func()
    started = time.perf_counter()
    for _ in range(repeats):
        func()
    return images * repeats / (time.perf_counter() - started)


def throughput(name: str, preset: str, device: str, batch: int = 32) -> dict:
    config = resolve(ReconstructionConfig(model=name, preset=preset))
    torch.manual_seed(0)
    model = build_model(config, "builtin").to(device)
    images = torch.randn(batch, 3, config.image_size, config.image_size, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def infer():
        with torch.no_grad():
            model(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def encoder_only():
        with torch.no_grad():
            model.encoder(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    targets = {"vertices": torch.zeros(batch, model.hand(images).num_vertices, 3, device=device),
               "joints_2d": torch.full((batch, 21, 2), 0.5, device=device)}

    def train_step():
        outputs = model(images, targets, torch.Generator().manual_seed(0)) if model.trains_on_targets else \
            model(images)
        loss = outputs["vertices"].square().mean() + outputs["joints_2d"].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    model.eval()
    inference = rate(infer, batch)
    encoder = rate(encoder_only, batch)
    model.train()
    training = rate(train_step, batch, repeats=2)
    return {"model": name, "preset": preset, "size": config.image_size, "params_m": sum(p.numel() for p in
                                                                                        model.parameters()) / 1e6,
            "infer": inference, "encoder": encoder, "train": training}


def quality(name: str, demo: Path, steps: int, seed: int, out: Path) -> dict:
    from pipeline.reconstruction.stage import EvalInputs, TrainInputs, recon_eval, recon_train

    config = with_overrides(PipelineConfig(), {"seed": seed, "reconstruction.model": name,
                                               "reconstruction.max_steps": steps, "reconstruction.eval_every": 250,
                                               "reconstruction.checkpoint_every": 250, "run.progress": False,
                                               "run.workers": 0})
    folder = out / f"{name}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    recon_train(config, TrainInputs(data=str(demo / "s0_train")), folder / "train")
    seconds = time.perf_counter() - started
    result = {"model": name, "seed": seed, "train_s": seconds}
    for split in ("s0_test", "s1_test"):
        summary = recon_eval(config, EvalInputs(ckpt=str(folder / "train"), data=str(demo / split)), folder / split)
        result[split] = {view: summary.joints[view] for view in ("root_relative", "procrustes")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="out/demo/real")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--models", default="mobrecon,handoccnet,m3dhmr,diffhand")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="out/bench_recon")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"machine: {device_name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}\n")
    print("| model | preset | px | params (M) | infer img/s | encoder-only img/s | infer / encoder | train img/s | "
          "infer vs mobrecon | train vs mobrecon |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline = {preset: throughput("mobrecon", preset, args.device) for preset in ("tiny", "paper")}
    for name in models:
        for preset in ("tiny", "paper"):
            r = baseline[preset] if name == "mobrecon" else throughput(name, preset, args.device)
            base = baseline[preset]
            print(f"| {name} | {preset} | {r['size']} | {r['params_m']:.2f} | {r['infer']:.0f} | {r['encoder']:.0f} | "
                  f"{r['infer'] / r['encoder']:.2f} | {r['train']:.0f} | {r['infer'] / base['infer']:.2f}x | "
                  f"{r['train'] / base['train']:.2f}x |", flush=True)
    if args.skip_quality:
        return
    demo = Path(args.demo)
    if not (demo / "s0_train" / ".manifest.json").exists():
        subprocess.run([str(Path(sys.executable).with_name("handbooster")), "data", "demo", "--out", str(demo),
                        "--size", "small"], check=True)
    out = Path(args.out)
    rows = [quality(name, demo, args.steps, int(seed), out) for name in models for seed in args.seeds.split(",")]
    print(f"\nquality: tiny preset, {args.steps} steps on {demo}/s0_train (joint errors in mm, AUC 0-50 mm)\n")
    print("| model | seed | train s | s0 RR mm | s0 PA mm | s0 PA AUC | s1 RR mm | s1 PA mm | s1 PA AUC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s0, s1 = r["s0_test"], r["s1_test"]
        print(f"| {r['model']} | {r['seed']} | {r['train_s']:.0f} | {s0['root_relative']['mean_mm']:.1f} | "
              f"{s0['procrustes']['mean_mm']:.1f} | {s0['procrustes']['auc']:.3f} | {s1['root_relative']['mean_mm']:.1f} | "
              f"{s1['procrustes']['mean_mm']:.1f} | {s1['procrustes']['auc']:.3f} |")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
