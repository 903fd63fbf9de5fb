"""Object library benchmark: SDF queries against trimesh, grid builds, VHACD cold vs cached.

Run: ``make bench-objects`` or ``.venv/bin/python benchmarks/bench_objects.py [--trimesh-points N]``.
Baselines measured in the same run: ``trimesh.proximity.signed_distance`` on the same points
(timed on the first N of them and reported per point, since 1M points take it minutes;
pass ``--trimesh-points 1000000`` to time all of them), and cached loads for the builds.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch


def seconds(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def near_surface_points(asset, n: int, seed: int) -> torch.Tensor:
    """Half within 2 cm of the surface, half anywhere in the bounding box padded by 3 cm."""
    points, normals = asset.sample_surface(n // 2, seed=seed, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    near = points + torch.from_numpy(rng.uniform(-0.02, 0.02, (n // 2, 1))).float() * normals
    lo, hi = asset.vertices.min(axis=0) - 0.03, asset.vertices.max(axis=0) + 0.03
    box = torch.from_numpy(rng.uniform(lo, hi, (n - n // 2, 3))).float()
    return torch.cat([near, box])[torch.from_numpy(rng.permutation(n))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--trimesh-points", type=int, default=20_000)
    parser.add_argument("--objects", default="mug,banana,cracker_box,tennis_ball")
    parser.add_argument("--vhacd-objects", default="tomato_soup_can,banana,hammer,mug,bowl")
    args = parser.parse_args()
    os.environ["HANDBOOSTER_CACHE"] = tempfile.mkdtemp(prefix="hb-bench-objects-")
    import trimesh

    from pipeline.objects import load_object_library

    torch.set_num_threads(os.cpu_count() or 1)
    library = load_object_library("builtin")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")

    print(f"\nSDF of {args.points:,} points (CPU, float32) vs trimesh.proximity.signed_distance "
          f"(timed on {args.trimesh_points:,})")
    print("| object | kind | grid build s | cached load s | ours ms / 1M | trimesh s / 1M | ratio "
          "| max err mm (|d|<2cm) | p99 err mm |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.objects.split(","):
        asset = library[name]
        kind = "analytic" if asset.exact_sdf is not None else "grid"
        build = seconds(asset.sdf_grid) if kind == "grid" else float("nan")
        cached = seconds(asset.sdf_grid) if kind == "grid" else float("nan")
        points = near_surface_points(asset, args.points, seed=0)
        asset.sdf(points[:1000])
        ours_s = min(seconds(lambda: asset.sdf(points)) for _ in range(3))
        ours = asset.sdf(points).double().numpy()
        subset = points[: args.trimesh_points].double().numpy()
        exact = None

        def baseline():
            nonlocal exact
            exact = -trimesh.proximity.signed_distance(asset.trimesh, subset)

        theirs_s = seconds(baseline) * args.points / len(subset)
        near = np.abs(exact) < 0.02
        error = np.abs(ours[: len(subset)] - exact)[near] * 1000
        print(f"| {name} | {kind} | {build:.2f} | {cached:.3f} | {ours_s * 1000 * 1e6 / args.points:.1f} | "
              f"{theirs_s * 1e6 / args.points:.1f} | {theirs_s / ours_s:.0f}x | {error.max():.3f} | "
              f"{np.percentile(error, 99):.3f} |")
        if torch.cuda.is_available():
            gpu = points.cuda()
            asset.sdf(gpu)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(10):
                asset.sdf(gpu)
            torch.cuda.synchronize()
            print(f"|  {name} on {torch.cuda.get_device_name(0)} | | | | "
                  f"{(time.perf_counter() - start) / 10 * 1000:.2f} | | | | |")

    print("\nConvex decomposition (pybullet VHACD, default parameters), cold vs cached")
    print("| object | faces | pieces | hull volume / mesh volume | cold s | cached s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.vhacd_objects.split(","):
        asset = library[name]
        cold = seconds(asset.convex_decomposition)
        cached = min(seconds(asset.convex_decomposition) for _ in range(5))
        pieces = asset.convex_pieces()
        hull_volume = sum(trimesh.Trimesh(v, f).convex_hull.volume for v, f in pieces)
        print(f"| {name} | {len(asset.faces)} | {len(pieces)} | {hull_volume / asset.trimesh.volume:.3f} | "
              f"{cold:.2f} | {cached * 1000:.3f} ms | {cold / cached:.0f}x |")


if __name__ == "__main__":
    main()
