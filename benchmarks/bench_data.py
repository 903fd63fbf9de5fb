"""Dataset layer benchmark: shard write/read rows/s, DataLoader samples/s, bytes per sample.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_data.py [--rows N] [--size 128]``.
Rows look like real ones: smooth photo-like RGB with mild noise, smooth normal and texture
maps, a mask with hand and object regions, all labels filled. Baselines measured in the same
run: decoding the four PNGs of a row with PIL alone (what a plain PIL reader pays before any
I/O), and a DataLoader with ``shuffle=True`` (fully random access: a row group read per sample).
Each read is timed twice and the faster run kept; the DataLoader runs include worker start-up.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from pipeline.data import ShardWriter
from pipeline.data.reader import ShardDataset, ShardSampler, collate_samples

TRAIN_COLUMNS = ["image", "normal", "texture", "mask", "hand_quat", "joints_2d"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def smooth(rng, size: int, channels: int, cells: int = 6) -> np.ndarray:
    coarse = rng.uniform(0, 255, (cells, cells, channels)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse.squeeze()).resize((size, size), Image.Resampling.BICUBIC))
    return image.reshape(size, size, channels)


def make_rows(n: int, size: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        photo = np.clip(smooth(rng, size, 3).astype(np.int16) + rng.normal(0, 4, (size, size, 3)), 0, 255)
        centre = rng.uniform(0.3, 0.7, 2) * size
        mask = np.zeros((size, size), np.uint8)
        mask[(xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < (size / 4) ** 2] = 1
        mask[(xx > centre[0]) & (yy > centre[1]) & (xx < centre[0] + size / 4)] = 2
        maps = [np.where(mask[..., None] > 0, smooth(rng, size, 3, 10), 0).astype(np.uint8) for _ in range(2)]
        quat = rng.normal(size=4)
        rows.append({
            "sample_id": f"bench/{i:07d}", "source": "real", "dataset": "bench", "split": "train",
            "sequence_id": f"seq{i // 50}", "frame": i % 50, "image": png(photo.astype(np.uint8)),
            "normal": png(maps[0]), "texture": png(maps[1]), "mask": png(mask),
            "crop_box": [0.0, 0.0, 256.0, 256.0], "K": np.eye(3).ravel(), "hand_pose": rng.normal(size=48),
            "hand_betas": rng.normal(size=10), "hand_trans": rng.normal(size=3), "hand_quat": quat / np.linalg.norm(quat),
            "joints_3d": rng.normal(size=63), "joints_2d": rng.uniform(0, size, 42), "object_id": "mug",
            "object_pose": np.r_[np.eye(3).ravel(), 0, 0, 0.5], "is_grasping": bool(i % 2), "origin": "real",
            "sampler": "none"})
    return rows


def rate(count: int, func, repeats: int = 2) -> float:
    """Rows per second of ``func``, best of ``repeats`` runs (the first one also warms caches)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return count / best


def loader_rate(dataset, workers: int, batch: int, **kwargs) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_samples,
                                         persistent_workers=False, **kwargs)

    def consume():
        for _ in loader:
            pass
    return rate(len(dataset), consume)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    print(f"machine: {platform.machine()} {cores} cores, torch {torch.__version__}; "
          f"{args.rows} rows at {args.size}x{args.size}")
    rows = make_rows(args.rows, args.size)
    out = os.path.join(tempfile.mkdtemp(prefix="hb-bench-data-"), "ds")

    def write():
        with ShardWriter(out, name="bench", rows_per_shard=1024, image_size=args.size) as writer:
            writer.write_rows(rows)
        return writer.manifest

    write_rate = rate(args.rows, write, repeats=1)
    total_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".parquet"))
    png_bytes = sum(len(r[c]) for r in rows for c in ("image", "normal", "texture", "mask"))

    full = ShardDataset(out, decode=False)
    raw_rate = rate(len(full), lambda: [full.raw(i) for i in range(len(full))])
    train = ShardDataset(out, columns=TRAIN_COLUMNS)
    decoded_rate = rate(len(train), lambda: [train[i] for i in range(len(train))])

    def pil_only():
        for row in rows:
            for column in ("image", "normal", "texture", "mask"):
                np.asarray(Image.open(io.BytesIO(row[column])))
    pil_rate = rate(len(rows), pil_only)

    print("\n| what | rows/s | per core | vs PIL decode only |")
    print("|---|---:|---:|---:|")
    table = [("write (check rows, Parquet zstd, sha256)", write_rate, 1),
             ("read raw rows (no decode), 1 process", raw_rate, 1),
             ("read + decode training columns, 1 process", decoded_rate, 1),
             ("baseline: PIL decode of the 4 PNGs only", pil_rate, 1)]
    image_only = ShardDataset(out, columns=["image", "hand_pose", "hand_betas", "hand_trans", "joints_3d", "joints_2d"])
    table.append(("read + decode image and hand labels (reconstructor training), 1 process",
                  rate(len(image_only), lambda: [image_only[i] for i in range(len(image_only))]), 1))
    for workers in (0, 2):
        sampler = ShardSampler(train, seed=0)
        table.append((f"DataLoader, ShardSampler, {workers} workers", loader_rate(train, workers, args.batch,
                                                                                  sampler=sampler), max(workers, 1)))
    for workers in (0, 2):
        table.append((f"baseline: DataLoader shuffle=True, {workers} workers",
                      loader_rate(train, workers, args.batch, shuffle=True), max(workers, 1)))
    for name, value, procs in table:
        print(f"| {name} | {value:,.0f} | {value / procs:,.0f} | {value / pil_rate:.2f} |")
    print(f"\nbytes per sample: {total_bytes / args.rows:,.0f} on disk (PNG payload {png_bytes / args.rows:,.0f}, "
          f"overhead {100 * (total_bytes - png_bytes) / png_bytes:.1f}%)")


if __name__ == "__main__":
    main()
