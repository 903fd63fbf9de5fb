"""Synthesizer benchmark: training samples/s, sampling images/s, and the cost of each sampler.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_synthesis.py [--batch 4]``.
Presets ``small`` (64 px) and ``base`` (128 px) with random weights on random conditions
(speed does not depend on what the network has learnt). The sampler comparison runs
DDPM-1000, DDIM-250 (the public code's setting) and DPM-Solver++-25 on the same model and
conditions in the same run, with classifier-free guidance (two network evaluations per step,
batched together), and counts the network evaluations.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from pipeline.synthesis.model import HandObjectUNet
from pipeline.synthesis.objective import diffusion_loss
from pipeline.synthesis.presets import resolve
from pipeline.synthesis.sample import denoise, scheduler_for
from pipeline.synthesis.train import noise_scheduler


class Counting(torch.nn.Module):
    """Wraps a model and counts its forward calls (network evaluations of the batch)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0
        self.config = model.config

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


def conditions(batch: int, size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            "normal": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            "texture": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            "mask": (torch.rand(batch, size, size, generator=g) * 3).to(torch.uint8),
            "quat": torch.nn.functional.normalize(torch.randn(batch, 4, generator=g), dim=1)}


def train_rate(model, config, batch: dict, steps: int) -> float:
    scheduler = noise_scheduler(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = batch["image"].shape[0]

    def step():
        t = torch.randint(0, 1000, (size,))
        noisy = scheduler.add_noise(batch["image"], torch.randn_like(batch["image"]), t)
        loss = diffusion_loss(model(noisy, t, batch["normal"], batch["texture"], batch["quat"]), batch["image"],
                              batch["mask"], t, scheduler.alphas_cumprod)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * size / (time.perf_counter() - start)


def sample_run(model, config, batch: dict, name: str, steps: int) -> tuple[float, int]:
    counting = Counting(model)
    start = time.perf_counter()
    denoise(counting, scheduler_for(name, noise_scheduler(config).config), batch, steps, 3.0,
            list(range(batch["quat"].shape[0])))
    return time.perf_counter() - start, counting.calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {device}")
    print("\n| preset | px | params M | train samples/s | DPM-Solver++-25 images/s (CFG) |")
    print("|---|---:|---:|---:|---:|")
    models = {}
    for preset in ("small", "base"):
        config = resolve(preset)
        model = HandObjectUNet.from_synthesis_config(config).to(device)
        batch = {k: v.to(device) for k, v in conditions(args.batch, config.image_size).items()}
        params = sum(p.numel() for p in model.parameters()) / 1e6
        train = train_rate(model.train(), config, batch, args.train_steps)
        seconds, _ = sample_run(model.eval(), config, batch, "dpm", 25)
        models[preset] = (model, config, batch)
        print(f"| {preset} | {config.image_size} | {params:.1f} | {train:.2f} | {args.batch / seconds:.3f} |")
    model, config, batch = models["small"]
    print(f"\nsamplers on the small preset (64 px), batch {args.batch}, guidance 3 (cond + null in one batch)")
    print("| sampler | steps | network evaluations | wall s | s per image | vs DDPM-1000 |")
    print("|---|---:|---:|---:|---:|---:|")
    results = [(name, steps, *sample_run(model, config, batch, name, steps))
               for name, steps in (("ddpm", 1000), ("ddim", 250), ("dpm", 25))]
    base = results[0][2]
    for name, steps, seconds, calls in results:
        print(f"| {name} | {steps} | {calls} | {seconds:.1f} | {seconds / args.batch:.2f} | {base / seconds:.1f}x |")


if __name__ == "__main__":
    main()
