"""95% intervals of an arm's change against real only: a hierarchical bootstrap, paired by seed.

Each arm and real only are trained with the same seeds (the same initialisation and data
order per seed). A bootstrap replicate draws seeds with replacement, then the test set's
sequences with replacement (frames of one sequence are not independent), and computes the
relative change of the mean error of the arm against real only over the same draws. The
interval is the 2.5th and 97.5th percentiles of those changes, in percent.
"""

from __future__ import annotations

import numpy as np

REPLICATES = 2000


def relative_change_interval(arm: dict[int, np.ndarray], base: dict[int, np.ndarray], sequences: np.ndarray,
                             replicates: int = REPLICATES, seed: int = 0) -> list[float] | None:
    """``[lo, hi]``, the 95% interval of ``100 (arm - base) / base`` of the mean error.

    ``arm`` and ``base`` map a training seed to per-sample errors, in the test set's row order;
    ``sequences`` holds each row's sequence. Only seeds both have are paired; None without one."""
    seeds = sorted(set(arm) & set(base))
    if not seeds:
        return None
    names, codes = np.unique(np.asarray(sequences), return_inverse=True)
    arm_sums = np.stack([np.bincount(codes, weights=arm[s], minlength=len(names)) for s in seeds])
    base_sums = np.stack([np.bincount(codes, weights=base[s], minlength=len(names)) for s in seeds])
    counts = np.bincount(codes, minlength=len(names)).astype(float)
    rng = np.random.default_rng(seed)
    changes = np.empty(replicates)
    for b in range(replicates):
        drawn_seeds = rng.integers(0, len(seeds), len(seeds))
        drawn = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names)).astype(float)
        rows = (counts * drawn).sum() * len(seeds)
        arm_mean = (arm_sums[drawn_seeds] @ drawn).sum() / rows
        base_mean = (base_sums[drawn_seeds] @ drawn).sum() / rows
        changes[b] = 100.0 * (arm_mean - base_mean) / base_mean
    low, high = np.percentile(changes, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def significant(interval: list[float] | None) -> bool:
    """A change counts only when its interval excludes 0."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)
