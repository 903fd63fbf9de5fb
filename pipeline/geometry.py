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


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (numpy; fast enough to run per rendered frame)."""
    triangles = vertices[faces]
    face_normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals = np.zeros_like(vertices, dtype=np.float64)
    for corner in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(faces[:, corner], face_normals[:, axis], minlength=len(vertices))
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


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


def sample_surface(vertices: np.ndarray, faces: np.ndarray, vertex_normals: np.ndarray, n: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform points on a triangle mesh and their interpolated unit normals."""
    rng = np.random.default_rng(seed)
    corners = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    weights = np.stack([1 - u - v, u, v], axis=1)
    points = np.einsum("nk,nkd->nd", weights, corners[face])
    normals = np.einsum("nk,nkd->nd", weights, vertex_normals[faces[face]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return points, normals


def farthest_points(points: np.ndarray, m: int) -> np.ndarray:
    """Indices of ``m`` points spread over ``points [N, 3]`` (Euclidean, starting at the first)."""
    m = min(m, len(points))
    chosen = [0]
    nearest = np.linalg.norm(points - points[0], axis=1)
    for _ in range(1, m):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.asarray(chosen, dtype=np.int64)
