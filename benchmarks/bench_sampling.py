"""Sampling benchmark: farthest pose sampling and cross-distribution sampling at scale.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_sampling.py [--n 100000] [--m 1000]``.
Baselines measured in the same run, on a size they can finish, with equal output checked:
Alg. 1 as printed in plain Python, and Alg. 1 vectorised with numpy but still recomputing
every candidate's distance to the whole chosen set each round (O(N m^2)).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np

from pipeline.sampling.fps import (
    cross_distribution_probabilities,
    farthest_pose_sampling,
    farthest_pose_sampling_reference,
)
from pipeline.sampling.pose_vectors import POSE_VECTOR_SIZE


def numpy_alg1(vectors, m, first):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen = [first]
    while len(chosen) < m:
        nearest = (1 - unit @ unit[chosen].T).min(axis=1)
        nearest[chosen] = -np.inf
        chosen.append(int(np.argmax(nearest)))
    return chosen


def timed(func):
    tracemalloc.start()
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--real", type=int, default=1000, help="real poses for cross-distribution sampling")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, numpy {np.__version__}; D = {POSE_VECTOR_SIZE}")
    rng = np.random.default_rng(0)
    print("\n| case | N | m | ours s | ours peak MiB | baseline | baseline s | ratio | same output |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for n, m, baselines in ((1000, 30, ("python", "numpy")), (20_000, 200, ("numpy",)), (args.n, args.m, ())):
        vectors = rng.normal(size=(n, POSE_VECTOR_SIZE))
        ours, seconds, peak = timed(lambda: farthest_pose_sampling(vectors, m, first_index=0))
        if not baselines:
            print(f"| FPS | {n:,} | {m:,} | {seconds:.2f} | {peak / 2**20:.1f} | - | - | - | - |")
        for name in baselines:
            func = farthest_pose_sampling_reference if name == "python" else numpy_alg1
            expected, base_seconds, _ = timed(lambda: func(vectors, m, 0))
            print(f"| FPS | {n:,} | {m:,} | {seconds:.3f} | {peak / 2**20:.1f} | Alg. 1 {name} | "
                  f"{base_seconds:.2f} | {base_seconds / seconds:.0f}x | {ours.tolist() == list(expected)} |")
    synthetic, real = rng.normal(size=(args.n, POSE_VECTOR_SIZE)), rng.normal(size=(args.real, POSE_VECTOR_SIZE))
    probabilities, seconds, peak = timed(lambda: cross_distribution_probabilities(synthetic, real))
    unit_s = synthetic / np.linalg.norm(synthetic, axis=1, keepdims=True)
    unit_r = real / np.linalg.norm(real, axis=1, keepdims=True)
    dense, base_seconds, base_peak = timed(lambda: (1 - unit_s @ unit_r.T).sum(axis=1))
    normalised = (dense - dense.min()) / (dense.max() - dense.min())
    scores_match = np.allclose(normalised / normalised.sum(), probabilities, rtol=1e-6, atol=1e-12)
    print(f"| cross-distribution | {args.n:,} | M={args.real:,} | {seconds:.3f} | {peak / 2**20:.1f} | "
          f"dense N x M matrix ({base_peak / 2**20:.0f} MiB) | {base_seconds:.3f} | {base_seconds / seconds:.0f}x | "
          f"{scores_match} |")


if __name__ == "__main__":
    main()
