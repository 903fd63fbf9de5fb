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
                             replicates: int = REPLICATES, seed: int = 0, seeds_drawn: int | None = None,
                             sequences_drawn: int | None = None) -> list[float] | None:
    """``[lo, hi]``, the 95% interval of ``100 (arm - base) / base`` of the mean error.

    ``arm`` and ``base`` map a training seed to per-sample errors, in the test set's row order;
    ``sequences`` holds each row's sequence. Only seeds both have are paired; None without one.
    ``seeds_drawn`` / ``sequences_drawn`` (default: as many as there are) draw more per
    replicate: the interval an experiment with that many seeds and test sequences would most
    likely get, if the ones measured are typical (:func:`projected_half_widths`)."""
    seeds = sorted(set(arm) & set(base))
    if not seeds:
        return None
    names, codes = np.unique(np.asarray(sequences), return_inverse=True)
    arm_sums = np.stack([np.bincount(codes, weights=arm[s], minlength=len(names)) for s in seeds])
    base_sums = np.stack([np.bincount(codes, weights=base[s], minlength=len(names)) for s in seeds])
    counts = np.bincount(codes, minlength=len(names)).astype(float)
    seeds_drawn, sequences_drawn = seeds_drawn or len(seeds), sequences_drawn or len(names)
    rng = np.random.default_rng(seed)
    changes = np.empty(replicates)
    for b in range(replicates):
        drawn_seeds = rng.integers(0, len(seeds), seeds_drawn)
        drawn = np.bincount(rng.integers(0, len(names), sequences_drawn), minlength=len(names)).astype(float)
        rows = (counts * drawn).sum() * seeds_drawn
        arm_mean = (arm_sums[drawn_seeds] @ drawn).sum() / rows
        base_mean = (base_sums[drawn_seeds] @ drawn).sum() / rows
        changes[b] = 100.0 * (arm_mean - base_mean) / base_mean
    low, high = np.percentile(changes, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def projected_half_widths(arm: dict[int, np.ndarray], base: dict[int, np.ndarray], sequences: np.ndarray,
                          seed_counts: tuple[int, ...], sequence_scales: tuple[int, ...] = (1,)) -> dict:
    """``{(seeds, scale): half width}`` of the 95% interval with ``seeds`` seeds and ``scale`` x
    the test sequences: how many of each an experiment needs for an interval of a given width."""
    names = len(np.unique(np.asarray(sequences)))
    widths = {}
    for count in seed_counts:
        for scale in sequence_scales:
            low, high = relative_change_interval(arm, base, sequences, seeds_drawn=count,
                                                 sequences_drawn=scale * names)
            widths[count, scale] = round((high - low) / 2, 2)
    return widths


MIN_SEEDS = 2  # below this an interval holds the test set's sampling only, not the training's


def significant(interval: list[float] | None, seeds: int) -> bool:
    """A change counts only when its interval excludes 0 and it pairs at least :data:`MIN_SEEDS`
    seeds: one seed's interval resamples test sequences only, so a training run's luck would pass
    for an effect."""
    return seeds >= MIN_SEEDS and interval is not None and (interval[0] > 0 or interval[1] < 0)
