"""``ObjectAsset``: one graspable object: watertight geometry, appearance, physics, SDF, pieces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from pipeline.objects.primitives import Shape
from pipeline.objects.sdf import DEFAULT_VOXELS, GridSdf, SdfGrid
from pipeline.paths import cache_dir


def mesh_hash(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Content hash of a mesh (positions in float64, faces in int64)."""
    digest = hashlib.sha256(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


@dataclass(eq=False)
class ObjectAsset:
    """A graspable object in its own frame, metres and kilograms.

    ``vertices``/``faces`` are the watertight solid used for the SDF, physics and validation;
    ``visual`` is what the texture map shows (the same surface with vertex colours, or the
    original textured mesh of a loaded model, which may split vertices along UV seams).
    """

    name: str
    category: str
    vertices: np.ndarray
    faces: np.ndarray
    visual: object  # trimesh.Trimesh with ColorVisuals or TextureVisuals
    mass: float
    friction: float
    source: str
    exact_sdf: Shape | None = None
    notes: list[str] = field(default_factory=list)

    @cached_property
    def mesh_hash(self) -> str:
        return mesh_hash(self.vertices, self.faces)

    @cached_property
    def trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    @property
    def extents(self) -> np.ndarray:
        return self.vertices.max(axis=0) - self.vertices.min(axis=0)

    def summary(self) -> dict:
        """What ``handbooster objects list`` shows."""
        mesh = self.trimesh
        return {
            "name": self.name,
            "category": self.category,
            "extents_m": [round(float(x), 4) for x in self.extents],
            "watertight": bool(mesh.is_watertight),
            "faces": int(len(self.faces)),
            "volume_cm3": round(float(mesh.volume) * 1e6, 2),
            "mass_kg": round(self.mass, 4),
            "friction": self.friction,
            "sdf": "analytic" if self.exact_sdf is not None else "grid",
            "texture": "uv image" if _has_uv_image(self.visual) else "vertex colours",
            "source": self.source,
            **({"notes": self.notes} if self.notes else {}),
        }

    # ------------------------------------------------------------------ signed distance

    def sdf_grid_path(self, voxels: int = DEFAULT_VOXELS) -> Path:
        return cache_dir("objects", "sdf") / f"{self.mesh_hash}_{voxels}.npz"

    def sdf_grid(self, voxels: int = DEFAULT_VOXELS) -> SdfGrid:
        """The sampled SDF, computed once per mesh and cached on disk."""
        path = self.sdf_grid_path(voxels)
        if path.is_file():
            return SdfGrid.load(path)
        grid = SdfGrid.from_mesh(self.vertices, self.faces, voxels=voxels)
        grid.save(path)
        return grid

    @cached_property
    def _grid_sdf(self) -> GridSdf:
        return GridSdf(self.sdf_grid())

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (negative inside) at ``points[..., 3]`` in the object frame.

        Differentiable with respect to the points; follows their device and dtype.
        Analytic for primitive shapes, a cached trilinear grid otherwise.
        """
        if points.shape[-1] != 3:
            raise ValueError(f"points must have shape [..., 3], got {tuple(points.shape)}")
        if self.exact_sdf is not None:
            return self.exact_sdf(points)
        return self._grid_sdf(points)

    # ------------------------------------------------------------------ surface samples

    def sample_surface(self, n: int, seed: int = 0, device=None, dtype=torch.float32):
        """``n`` area-uniform surface points and their (smoothly interpolated) outward normals."""
        from pipeline.geometry import sample_surface

        points, normals = sample_surface(self.vertices, self.faces, self.trimesh.vertex_normals, n, seed)
        return (torch.as_tensor(points, dtype=dtype, device=device),
                torch.as_tensor(normals, dtype=dtype, device=device))

    # ------------------------------------------------------------------ physics

    def convex_decomposition(self, params: dict | None = None) -> Path:
        """OBJ of convex pieces for pybullet, computed once per mesh and cached."""
        from pipeline.objects.decomposition import convex_decomposition

        return convex_decomposition(self.vertices, self.faces, self.mesh_hash, params)

    def convex_pieces(self, params: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        from pipeline.objects.decomposition import read_pieces

        return read_pieces(self.convex_decomposition(params))

    def prepare(self, voxels: int = DEFAULT_VOXELS, vhacd: dict | None = None) -> dict:
        """Precompute what later stages need; returns where each result lives."""
        result = {"decomposition": str(self.convex_decomposition(vhacd))}
        if self.exact_sdf is None:
            self.sdf_grid(voxels)
            result["sdf"] = str(self.sdf_grid_path(voxels))
        else:
            result["sdf"] = "analytic"
        return result


def _has_uv_image(mesh) -> bool:
    if mesh.visual.kind != "texture":
        return False
    material = getattr(mesh.visual, "material", None)
    return getattr(material, "image", None) is not None or getattr(material, "baseColorTexture", None) is not None
