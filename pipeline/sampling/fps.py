"""Farthest pose sampling (HandBooster Alg. 1) and cross-distribution sampling (eq. 6).

Alg. 1 as printed recomputes every candidate's nearest distance to the chosen set in every
round: O(N m^2). Here each candidate keeps its nearest distance and only the newly chosen
pose updates it: O(N m) time, O(N) memory beyond the vectors, the same indices (ties go to
the lowest index, as Alg. 1's strict ``d_i > d_max`` scan does).
"""

from __future__ import annotations

import numpy as np

from pipeline.sampling.pose_vectors import unit_rows

CHUNK = 1 << 16


def farthest_pose_sampling(vectors, m: int, first_index: int | None = None, seed: int = 0,
                           chunk: int = CHUNK) -> np.ndarray:
    """Indices of ``m`` poses of ``vectors [N, D]``, each the farthest (1 - cos) from those before."""
    unit = unit_rows(vectors)
    n = len(unit)
    if not 0 <= m <= n:
        raise ValueError(f"cannot sample {m} of {n} poses")
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(np.random.default_rng(seed).integers(n)) if first_index is None else int(first_index)
    if not 0 <= first < n:
        raise ValueError(f"first_index {first} is not in [0, {n})")
    nearest = np.full(n, np.inf)
    chosen = np.empty(m, dtype=np.int64)
    chosen[0] = first
    for k in range(1, m):
        latest = unit[chosen[k - 1]]
        for start in range(0, n, chunk):
            block = slice(start, start + chunk)
            np.minimum(nearest[block], 1.0 - unit[block] @ latest, out=nearest[block])
        nearest[chosen[k - 1]] = -np.inf  # chosen poses are never candidates again
        chosen[k] = int(np.argmax(nearest))
    return chosen


def cross_distribution_probabilities(synthetic, real) -> np.ndarray:
    """Sampling probabilities of synthetic poses, higher the farther they are from all real ones.

    Score ``s_i = sum_j (1 - cos(v_i, r_j)) = M - v_i . sum_j r_j`` (unit rows: O((N + M) D)),
    min-max normalised and divided by its sum. The least novel pose gets probability 0 (the
    formula's own consequence); if all scores are equal the distribution is uniform.
    """
    synthetic, real = unit_rows(synthetic), unit_rows(real)
    if not len(real):
        raise ValueError("cross-distribution sampling needs at least one real pose")
    scores = len(real) - synthetic @ real.sum(axis=0)
    low, high = scores.min(), scores.max()
    if not high - low > 1e-12 * max(1.0, abs(high)):
        return np.full(len(scores), 1.0 / len(scores))
    normalised = (scores - low) / (high - low)
    return normalised / normalised.sum()


def draw_without_replacement(probabilities, k: int, seed: int = 0) -> np.ndarray:
    """``k`` distinct indices drawn with ``probabilities``; zero-probability ones come last, by index."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not 0 <= k <= len(probabilities):
        raise ValueError(f"cannot draw {k} of {len(probabilities)} poses")
    positive = np.flatnonzero(probabilities > 0)
    rng = np.random.default_rng(seed)
    take = min(k, len(positive))
    drawn = rng.choice(positive, size=take, replace=False, p=probabilities[positive] / probabilities[positive].sum()) \
        if take else np.zeros(0, dtype=np.int64)
    rest = np.flatnonzero(probabilities <= 0)[:k - take]
    return np.concatenate([drawn, rest]).astype(np.int64)


def farthest_pose_sampling_reference(vectors, m: int, first: int) -> list[int]:
    """Alg. 1 as the paper prints it, in plain Python: every round, every candidate's nearest
    cosine distance to the chosen set. Slow; the reference the test checks
    :func:`farthest_pose_sampling` against and the benchmark's baseline."""
    def distance(a, b):
        return 1 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))

    chosen = [first]
    while len(chosen) < m:
        best, best_distance = None, -np.inf
        for i in range(len(vectors)):
            if i in chosen:
                continue
            d = min(distance(vectors[i], vectors[j]) for j in chosen)
            if d > best_distance:
                best, best_distance = i, d
        chosen.append(best)
    return chosen
