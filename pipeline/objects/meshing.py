"""Implicit shape -> watertight, evenly triangulated mesh (marching cubes + isotropic remeshing)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.objects.primitives import Shape


def evaluate(shape: Shape, points: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``shape`` at numpy points, in float64 chunks."""
    with torch.no_grad():
        parts = [shape(torch.from_numpy(points[i:i + chunk])).numpy() for i in range(0, len(points), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0)


def project_onto_surface(shape: Shape, vertices: np.ndarray, steps: int = 4) -> np.ndarray:
    """Newton steps along the distance gradient onto the zero level set."""
    p = torch.from_numpy(np.array(vertices, dtype=np.float64))
    for _ in range(steps):
        p.requires_grad_(True)
        d = shape(p)
        (grad,) = torch.autograd.grad(d.sum(), p)
        with torch.no_grad():
            p = p - d[:, None] * grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-9) ** 2
    return p.detach().numpy()


def mesh_shape(shape: Shape, lo, hi, pitch: float, target_faces: int,
               edge_range: tuple[float, float] = (0.0015, 0.005)) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the zero level set of ``shape`` inside the box [lo, hi].

    Marching cubes at ``pitch`` gives a fine mesh; Botsch-Kobbelt remeshing brings it to about
    ``target_faces`` even triangles (edge length clipped to ``edge_range``); vertices are then
    projected back onto the surface. Raises if the shape touches the box or the result leaks.
    """
    import fast_simplification
    import gpytoolbox
    import trimesh
    from skimage.measure import marching_cubes

    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    counts = np.ceil((hi - lo) / pitch).astype(int) + 1
    axes = [lo[i] + pitch * np.arange(counts[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    volume = evaluate(shape, grid).reshape(tuple(counts))
    if (volume[[0, -1]] <= 0).any() or (volume[:, [0, -1]] <= 0).any() or (volume[:, :, [0, -1]] <= 0).any():
        raise RuntimeError("shape does not fit its meshing box")
    verts, faces, _, _ = marching_cubes(volume, 0.0, spacing=(pitch,) * 3)
    if len(faces) > 4 * target_faces:
        verts, faces = fast_simplification.simplify(verts + lo, faces.astype(np.int64), target_count=4 * target_faces)
    else:
        verts = verts + lo
    verts = np.asarray(verts, dtype=np.float64)
    area = trimesh.Trimesh(verts, faces, process=False).area
    edge = float(np.clip(np.sqrt(4 * area / (np.sqrt(3) * target_faces)), *edge_range))
    verts, faces = gpytoolbox.remesh_botsch(verts, faces.astype(np.int32), i=10, h=edge)
    verts = project_onto_surface(shape, np.asarray(verts, dtype=np.float64))
    faces = np.asarray(faces, dtype=np.int64)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    if not mesh.is_watertight or mesh.volume <= 0:
        raise RuntimeError("meshing produced a mesh that is not a closed, outward-facing surface")
    return verts, faces
