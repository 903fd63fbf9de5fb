"""Mesh checks shared by the hand, the object library and grasp validation (numpy only)."""

from __future__ import annotations

import numpy as np


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges, each ordered along its faces' half-edge direction."""
    half_edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    opposite = {(int(a), int(b)) for a, b in half_edges}
    following = {int(a): int(b) for a, b in half_edges if (int(b), int(a)) not in opposite}
    loops, seen = [], set()
    for start in sorted(following):
        if start in seen:
            continue
        loop, current = [], start
        while current not in seen:
            seen.add(current)
            loop.append(current)
            current = following[current]
        loops.append(np.asarray(loop))
    return loops


def close_boundary_loops(faces: np.ndarray) -> np.ndarray:
    """Faces plus a triangle fan over every boundary loop, wound to match its neighbours."""
    caps = [
        np.stack([np.full(len(loop) - 2, loop[0]), loop[2:], loop[1:-1]], axis=1)
        for loop in boundary_loops(faces)
        if len(loop) >= 3
    ]
    return np.concatenate([faces] + caps).astype(faces.dtype) if caps else faces.copy()


def _segments_cross_triangles(segments_from, segments_to, triangles, eps=1e-9) -> np.ndarray:
    """Möller–Trumbore: does segment k cross the interior of triangle k? (strict, with eps)."""
    direction = segments_to - segments_from
    e1 = triangles[:, 1] - triangles[:, 0]
    e2 = triangles[:, 2] - triangles[:, 0]
    p = np.cross(direction, e2)
    det = np.sum(e1 * p, axis=1)
    ok = np.abs(det) > 1e-15
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = segments_from - triangles[:, 0]
    u = np.sum(s * p, axis=1) * inv
    q = np.cross(s, e1)
    v = np.sum(direction * q, axis=1) * inv
    t = np.sum(e2 * q, axis=1) * inv
    return ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Pairs of faces (K, 2) that cross each other; faces sharing a vertex are not tested."""
    from scipy.spatial import cKDTree

    tri = vertices[faces]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    centre = 0.5 * (lo + hi)
    reach = np.linalg.norm(hi - lo, axis=1).max()
    pairs = cKDTree(centre).query_pairs(r=reach, output_type="ndarray")
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    overlap = np.all(lo[a] <= hi[b], axis=1) & np.all(lo[b] <= hi[a], axis=1)
    shares = (faces[a][:, :, None] == faces[b][:, None, :]).any(axis=(1, 2))
    pairs = pairs[overlap & ~shares]
    a, b = pairs[:, 0], pairs[:, 1]
    hit = np.zeros(len(pairs), dtype=bool)
    for first, second in ((a, b), (b, a)):
        for i, j in ((0, 1), (1, 2), (2, 0)):
            hit |= _segments_cross_triangles(tri[first, i], tri[first, j], tri[second])
    return pairs[hit]
