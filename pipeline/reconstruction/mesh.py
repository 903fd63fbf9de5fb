"""The hand mesh's hierarchy and spiral sequences, computed from the hand model's own faces.

A vertex-based decoder (MobRecon, M3DHMR) works on a mesh pyramid: the full hand (778
vertices for MANO, 758 for the builtin hand) quadric-decimated by 2 per level (778 -> 389 ->
195 -> 98 -> 49). Between levels, ``down`` picks for each coarse vertex its nearest fine
vertex, and ``up`` places each fine vertex by the barycentric coordinates of its closest
point on the coarse mesh (COMA's scheme). A spiral sequence lists, for each vertex, itself
and then its rings in cyclic order (SpiralNet++), so a convolution can weigh neighbours by
position in the sequence. Nothing comes from a shipped template: the pyramid is built from
whichever hand model is in use and cached on disk by its topology and rest shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pipeline.paths import atomic_write_npz, cache_dir

LEVELS = 4
SPIRAL_LENGTH = 9
CACHE_VERSION = 2


@dataclass
class MeshHierarchy:
    """Level 0 is the full mesh; ``down[i]`` maps level i to i + 1, ``up[i]`` level i + 1 to i."""

    vertices: list[np.ndarray]
    faces: list[np.ndarray]
    down: list[np.ndarray]  # [n_{i+1}, n_i], one 1 per row
    up: list[np.ndarray]  # [n_i, n_{i+1}], barycentric weights, rows sum to 1

    @property
    def sizes(self) -> list[int]:
        return [len(v) for v in self.vertices]

    def spirals(self, length: int = SPIRAL_LENGTH, dilation: int = 1) -> list[np.ndarray]:
        """``[n_i, length]`` spiral indices of every level."""
        return [spiral_sequences(faces, len(vertices), length, dilation)
                for vertices, faces in zip(self.vertices, self.faces)]


def one_rings(faces: np.ndarray, count: int) -> list[list[int]]:
    """Each vertex's neighbours in cyclic order around it (walking its fan of faces; a boundary
    vertex's fan is walked from one open end). Deterministic: starts at the lowest index."""
    following: list[dict[int, int]] = [{} for _ in range(count)]
    for a, b, c in faces:
        for v, x, y in ((a, b, c), (b, c, a), (c, a, b)):
            following[v][int(x)] = int(y)  # around v, counter-clockwise: x then y
    rings = []
    for v in range(count):
        step = following[v]
        if not step:
            rings.append([])
            continue
        targets = set(step.values())
        starts = sorted(x for x in step if x not in targets) or [min(step)]  # an open fan starts at its edge
        ring, current = [], starts[0]
        while current not in ring:
            ring.append(current)
            if current not in step:
                break
            current = step[current]
        ring += sorted((set(step) | targets) - set(ring))  # a non-manifold remainder, in index order
        rings.append(ring)
    return rings


def spiral_sequences(faces: np.ndarray, count: int, length: int = SPIRAL_LENGTH, dilation: int = 1) -> np.ndarray:
    """``[count, length]``: each vertex, then its rings in cyclic order, every ``dilation``-th
    entry after the first; a spiral that runs out of vertices repeats its last one."""
    rings = one_rings(faces, count)
    needed = (length - 1) * dilation + 1
    out = np.zeros((count, length), dtype=np.int64)
    for v in range(count):
        spiral, seen, frontier = [v], {v}, [v]
        while len(spiral) < needed and frontier:
            next_frontier = []
            for u in frontier:
                for w in rings[u]:
                    if w not in seen:
                        seen.add(w)
                        spiral.append(w)
                        next_frontier.append(w)
            frontier = next_frontier
        spiral = spiral[:needed] + [spiral[min(len(spiral), needed) - 1]] * max(0, needed - len(spiral))
        out[v] = [spiral[0]] + spiral[dilation::dilation][:length - 1]
    return out


def _barycentric_up(fine: np.ndarray, coarse: np.ndarray, coarse_faces: np.ndarray) -> np.ndarray:
    import trimesh

    mesh = trimesh.Trimesh(coarse, coarse_faces, process=False)
    closest, _, triangle = trimesh.proximity.closest_point(mesh, fine)
    corners = coarse[coarse_faces[triangle]]
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.clip(trimesh.triangles.points_to_barycentric(corners, closest), 0.0, 1.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    degenerate = ~np.isfinite(weights).all(axis=1) | (weights.sum(axis=1) < 0.5)  # a sliver triangle
    nearest_corner = np.linalg.norm(corners - fine[:, None], axis=2).argmin(axis=1)
    weights[degenerate] = np.eye(3)[nearest_corner[degenerate]]
    up = np.zeros((len(fine), len(coarse)))
    np.add.at(up, (np.repeat(np.arange(len(fine)), 3), coarse_faces[triangle].ravel()), weights.ravel())
    return up


def _distinct_nearest(tree, points: np.ndarray, candidates: int = 16) -> np.ndarray:
    """For each point a different tree vertex, as near as can be: the points whose nearest
    vertex is closest choose first."""
    distances, indices = tree.query(points, k=candidates)
    chosen, taken = np.full(len(points), -1), set()
    for point in np.argsort(distances[:, 0], kind="stable"):
        free = [int(i) for i in indices[point] if int(i) not in taken]
        if not free:  # all nearby vertices taken: the nearest vertex nobody has
            free = [int(i) for i in np.argsort(np.linalg.norm(tree.data - points[point], axis=1)) if int(i) not in taken]
        chosen[point] = free[0]
        taken.add(free[0])
    return chosen


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, levels: int = LEVELS) -> MeshHierarchy:
    """Quadric-decimate by 2 per level; nearest-vertex down-sampling, barycentric up-sampling."""
    import fast_simplification
    from scipy.spatial import cKDTree

    vertex_levels, face_levels = [np.asarray(vertices, np.float64)], [np.asarray(faces, np.int64)]
    down, up = [], []
    for _ in range(levels):
        fine, fine_faces = vertex_levels[-1], face_levels[-1]
        coarse, coarse_faces = fast_simplification.simplify(fine, fine_faces, target_reduction=0.5)
        nearest = _distinct_nearest(cKDTree(fine), coarse)
        coarse = fine[nearest]  # coarse vertices are fine ones, so down-sampling picks exact values
        picking = np.zeros((len(coarse), len(fine)))
        picking[np.arange(len(coarse)), nearest] = 1.0
        down.append(picking)
        up.append(_barycentric_up(fine, coarse, coarse_faces))
        vertex_levels.append(coarse)
        face_levels.append(np.asarray(coarse_faces, np.int64))
    return MeshHierarchy(vertex_levels, face_levels, down, up)


def hand_hierarchy(hand_model, levels: int = LEVELS) -> MeshHierarchy:
    """The hierarchy of a hand model's rest mesh, built once per topology and rest shape."""
    import torch

    with torch.no_grad():
        template = hand_model.mano.v_template.double().cpu().numpy()
    digest = hashlib.sha256(np.ascontiguousarray(hand_model.faces, np.int64).tobytes()
                            + np.round(template, 6).tobytes() + f"{levels}/{CACHE_VERSION}".encode()).hexdigest()[:16]
    path = cache_dir("mesh_hierarchy") / f"{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return MeshHierarchy([data[f"vertices_{i}"] for i in range(levels + 1)],
                                 [data[f"faces_{i}"] for i in range(levels + 1)],
                                 [data[f"down_{i}"] for i in range(levels)], [data[f"up_{i}"] for i in range(levels)])
    hierarchy = build_hierarchy(template, hand_model.faces, levels)
    arrays = {**{f"vertices_{i}": v for i, v in enumerate(hierarchy.vertices)},
              **{f"faces_{i}": f for i, f in enumerate(hierarchy.faces)},
              **{f"down_{i}": d for i, d in enumerate(hierarchy.down)}, **{f"up_{i}": u for i, u in enumerate(hierarchy.up)}}
    atomic_write_npz(path, arrays)
    return hierarchy
