"""Reconstructor benchmark: throughput of each model, and what each learns on the demo in a fixed budget.

Run: ``.venv/bin/python benchmarks/bench_recon.py [--demo out/demo/real] [--steps 1500]
[--models mobrecon,handoccnet,m3dhmr,diffhand] [--recipes tiny,lite0] [--device cpu|cuda] [--seeds 0]
[--skip-throughput]``.

Throughput: images/s of inference and of training (forward + backward + Adam) at each
model's ``paper`` input size and width (MobRecon 128 px, HandOccNet 256 px) and at ``tiny``,
batch 32, against baselines measured in the same run: the encoder alone (how much the
decoder adds) and the MobRecon-style model at the same preset. The diffusion model's
inference is its whole DDIM-10 sampling. Target: the MobRecon-style model infers >= 200 images/s at 128 px on
the 2-core CPU (the edge-case filter must never be the slow stage). Then the Lite0 recipe's
training rate with its images in the plain layout against channels-last (the default).

Quality: each model (``tiny`` preset) and recipe trained ``--steps`` steps (a fixed CPU
budget) under each demo protocol, on its own training split (``s0_train`` for ``s0_test``,
``s1_train`` for ``s1_test``: no model scores frames it trained on), with the official
metrics and the wall time of each; beside them, the reference rows of the same splits (the
constant predictor, the training split's mean pose; the nearest training pose, an oracle
retrieval) and the ratio of each model's RR J-PE to the constant's (the boost experiment
counts a reconstructor as informative at 0.6 or below). Recipes: ``tiny`` (the dense CNN
trained from scratch), ``lite0`` (the ImageNet EfficientNet-Lite0 encoder that ships in the
wheel), ``lite0-128`` (the same at 128 px). The demo is built (``handbooster data demo --size
small``) if missing.
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


def throughput(name: str, preset: str, device: str, batch: int = 32, backbone: str | None = None,
               channels_last: bool = True) -> dict:
    config = resolve(ReconstructionConfig(model=name, preset=preset, **({"backbone": backbone} if backbone else {})))
    torch.manual_seed(0)
    model = build_model(config, "builtin").to(device)
    if not channels_last:  # the Lite0 encoder's plain-layout baseline
        model.encoder.memory_format = torch.contiguous_format
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


RECIPES = {"tiny": {}, "lite0": {"reconstruction.backbone": "lite0"},
           "lite0-128": {"reconstruction.backbone": "lite0", "reconstruction.image_size": 128}}
PROTOCOLS = ("s0", "s1")


def quality(name: str, recipe: str, demo: Path, protocol: str, steps: int, seed: int, out: Path) -> dict:
    """One model trained on the protocol's training split, scored on its test split."""
    from pipeline.reconstruction.stage import EvalInputs, TrainInputs, recon_eval, recon_train

    config = with_overrides(PipelineConfig(), {"seed": seed, "reconstruction.model": name,
                                               "reconstruction.max_steps": steps, "reconstruction.eval_every": 250,
                                               "reconstruction.checkpoint_every": 250, "run.progress": False,
                                               "run.workers": 0, "reconstruction.num_workers": 0,
                                               **RECIPES[recipe]})
    folder = out / f"{name}-{recipe}-{protocol}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    recon_train(config, TrainInputs(data=str(demo / f"{protocol}_train")), folder / "train")
    seconds = time.perf_counter() - started
    summary = recon_eval(config, EvalInputs(ckpt=str(folder / "train"), data=str(demo / f"{protocol}_test")),
                         folder / "test")
    return {"model": name, "recipe": recipe, "protocol": protocol, "seed": seed, "train_s": seconds,
            **{view: summary.joints[view] for view in ("root_relative", "procrustes")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="out/demo/real")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--models", default="mobrecon,handoccnet,m3dhmr,diffhand")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="out/bench_recon")
    parser.add_argument("--recipes", default="tiny", help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"machine: {device_name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}\n")
    if not args.skip_throughput:
        print("| model | preset | px | params (M) | infer img/s | encoder-only img/s | infer / encoder | train img/s | "
              "infer vs mobrecon | train vs mobrecon |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline = {} if args.skip_throughput else {preset: throughput("mobrecon", preset, args.device)
                                                for preset in ("tiny", "paper")}
    for name in [] if args.skip_throughput else models:
        for preset in ("tiny", "paper"):
            r = baseline[preset] if name == "mobrecon" else throughput(name, preset, args.device)
            base = baseline[preset]
            print(f"| {name} | {preset} | {r['size']} | {r['params_m']:.2f} | {r['infer']:.0f} | {r['encoder']:.0f} | "
                  f"{r['infer'] / r['encoder']:.2f} | {r['train']:.0f} | {r['infer'] / base['infer']:.2f}x | "
                  f"{r['train'] / base['train']:.2f}x |", flush=True)
    if not args.skip_throughput:
        print("\n| Lite0 recipe, tiny, batch 16 | train img/s plain layout | channels-last (default) | ratio |")
        print("|---|---:|---:|---:|")
        for repeat in range(2):  # alternated: the second pair shows the spread
            plain, fast = (throughput("mobrecon", "tiny", args.device, 16, "lite0", layout)["train"]
                           for layout in (False, True))
            print(f"| run {repeat + 1} | {plain:.0f} | {fast:.0f} | {fast / plain:.2f}x |", flush=True)
    if args.skip_quality:
        return
    demo = Path(args.demo)
    if not (demo / "s0_train" / ".manifest.json").exists():
        subprocess.run([str(Path(sys.executable).with_name("handbooster")), "data", "demo", "--out", str(demo),
                        "--size", "small"], check=True)
    out = Path(args.out)
    from pipeline.boost.references import reference_errors

    references = {protocol: reference_errors(demo / f"{protocol}_train", demo / f"{protocol}_test")
                  for protocol in PROTOCOLS}
    rows = [quality(name, recipe, demo, protocol, args.steps, int(seed), out) for name in models
            for recipe in args.recipes.split(",") for protocol in PROTOCOLS for seed in args.seeds.split(",")]
    print(f"\nquality: tiny preset, {args.steps} steps on each protocol's training split of {demo}, scored on its "
          "test split (joint errors in mm, AUC 0-50 mm); 'vs constant': RR J-PE / the constant predictor's\n")
    print("| model | recipe | protocol | seed | train s | RR mm | vs constant | PA mm | PA AUC |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for protocol, found in references.items():
        for reference, entry in found.items():
            print(f"| reference: {reference} | | {protocol} | | | {entry['rr_mm']:.1f} | "
                  f"{entry['rr_mm'] / found['constant']['rr_mm']:.2f} | {entry['pa_mm']:.1f} | |")
    for r in rows:
        constant = references[r["protocol"]]["constant"]["rr_mm"]
        print(f"| {r['model']} | {r['recipe']} | {r['protocol']} | {r['seed']} | {r['train_s']:.0f} | "
              f"{r['root_relative']['mean_mm']:.1f} | {r['root_relative']['mean_mm'] / constant:.2f} | "
              f"{r['procrustes']['mean_mm']:.1f} | {r['procrustes']['auc']:.3f} |")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
