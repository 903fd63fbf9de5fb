"""What both renderers share: camera-frame geometry to OpenGL, intrinsics checks, mesh caches.

Inputs are in the OpenCV camera frame (x right, y down, z forward, metres). pyrender's camera
looks down -z with y up, so every point and normal goes through ``F = diag(1, -1, -1)``
and the camera node stays at the identity. pyrender's ``IntrinsicsCamera`` puts pixel
``i``'s centre at ``i + 0.5``; OpenCV at ``i``: the principal point moves by half a pixel.
"""

from __future__ import annotations

import functools

import numpy as np

from pipeline.errors import InputError
from pipeline.geometry import close_boundary_loops, vertex_normals

FLIP = np.diag([1.0, -1.0, -1.0])
FLIP4 = np.diag([1.0, -1.0, -1.0, 1.0])
ZNEAR, ZFAR = 0.01, 20.0


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world pose for pyrender (OpenGL camera looking down its -z)."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(back, right), back], axis=1)
    pose[:3, 3] = eye
    return pose


def light_pose(direction) -> np.ndarray:
    """A node pose whose -z axis (where pyrender's directional lights shine) is ``direction``."""
    direction = np.asarray(direction, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if abs(direction[1]) < 0.9 * np.linalg.norm(direction) else np.array([1.0, 0.0, 0.0])
    return look_at(np.zeros(3), direction, up)


@functools.cache
def _ordered_node_class(pyrender):
    class OrderedNode(pyrender.Node):
        """A node hashing to a fixed number, so sets of such nodes iterate in that order."""

        def __init__(self, order: int, **kwargs):
            self.order = order
            super().__init__(**kwargs)

        def __hash__(self) -> int:
            return self.order

    return OrderedNode


def add_lights(pyrender, scene, lights) -> None:
    """Add directional ``(light, direction)`` pairs in a fixed order. pyrender sums the lights
    in the iteration order of a set of nodes, which follows memory addresses: with ordinary
    nodes a pixel can differ by one level from one run to the next."""
    node_class = _ordered_node_class(pyrender)
    for order, (light, direction) in enumerate(lights):
        scene.add_node(node_class(order, light=light, matrix=light_pose(direction)))


def hand_mesh(pyrender, vertices: np.ndarray, faces: np.ndarray, material):
    """A pyrender mesh of the hand (camera frame, OpenCV) with its open wrist capped, in OpenGL."""
    faces = closed_faces(faces)
    return pyrender.Mesh([pyrender.Primitive(
        positions=(vertices @ FLIP).astype(np.float32),
        normals=(vertex_normals(vertices, faces) @ FLIP).astype(np.float32),
        indices=faces.astype(np.uint32), material=material, mode=4)])


def check_intrinsics(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or abs(np.linalg.det(K)) < 1e-12 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"K: expected a camera matrix with positive focal lengths, got {K.round(4).tolist()}")
    return K


def set_intrinsics(camera, K: np.ndarray) -> None:
    camera.fx, camera.fy = float(K[0, 0]), float(K[1, 1])
    camera.cx, camera.cy = float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5


def check_mesh(name: str, vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not len(vertices):
        raise InputError(f"{name}: expected vertices of shape (V, 3) with V > 0, got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not len(faces):
        raise InputError(f"{name}: expected faces of shape (F, 3) with F > 0, got {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{name}: face indices outside [0, {len(vertices)})")
    if not np.isfinite(vertices).all():
        raise InputError(f"{name}: vertices hold NaN or inf")
    return vertices, faces


@functools.lru_cache(maxsize=16)
def _closed(faces_bytes: bytes, count: int) -> np.ndarray:
    return close_boundary_loops(np.frombuffer(faces_bytes, dtype=np.int64).reshape(count, 3))


def closed_faces(faces: np.ndarray) -> np.ndarray:
    """The faces with every boundary loop capped (the hand's wrist), cached per topology."""
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    return _closed(faces.tobytes(), len(faces))


def mirrored_copy(mesh):
    """A trimesh mirrored through its x = 0 plane (faces re-wound, visuals kept)."""
    mirror = mesh.copy()
    mirror.apply_transform(np.diag([-1.0, 1.0, 1.0, 1.0]))  # trimesh re-winds faces for reflections
    return mirror


class MeshCache:
    """Per-renderer cache of what an object asset needs on the GPU side, mirrored or not."""

    def __init__(self, pyrender):
        self.pyrender = pyrender
        self._items: dict = {}

    def _get(self, kind: str, asset, mirrored: bool, build):
        key = (kind, id(asset), mirrored)
        if key not in self._items:
            self._items[key] = (asset, build())  # keeps the asset alive so its id stays unique
        return self._items[key][1]

    def solid(self, asset, mirrored: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(vertices, faces, vertex normals)`` of the asset's solid in its own frame."""
        def build():
            vertices, faces = np.asarray(asset.vertices, np.float64), np.asarray(asset.faces, np.int64)
            normals = np.asarray(asset.trimesh.vertex_normals, np.float64)
            if mirrored:
                return vertices * [-1.0, 1.0, 1.0], faces[:, [0, 2, 1]], normals * [-1.0, 1.0, 1.0]
            return vertices, faces, normals
        return self._get("solid", asset, mirrored, build)

    def solid_mesh(self, asset, mirrored: bool):
        """The asset's solid as an untextured pyrender Mesh (normal and segmentation passes)."""
        def build():
            vertices, faces, normals = self.solid(asset, mirrored)
            return self.pyrender.Mesh([self.pyrender.Primitive(
                positions=vertices.astype(np.float32), normals=normals.astype(np.float32),
                indices=faces.astype(np.uint32), mode=4)])
        return self._get("solid_mesh", asset, mirrored, build)

    def visual(self, asset, mirrored: bool, full: bool = False):
        """The asset's look as a pyrender Mesh. ``full``: its visual mesh as it is. Otherwise a
        vertex-painted visual with more faces than the solid becomes the solid, each vertex taking
        the colour of the nearest visual vertex: at condition-map sizes the extra faces are
        sub-pixel and only cost render time. UV-textured visuals are always kept."""
        def build():
            visual = asset.visual
            if not full and visual.visual.kind == "vertex" and len(visual.faces) > len(asset.faces):
                from scipy.spatial import cKDTree

                vertices, faces, normals = self.solid(asset, mirrored)
                colours = np.asarray(visual.visual.vertex_colors)
                nearest = cKDTree(np.asarray(visual.vertices)).query(vertices * ([-1.0, 1.0, 1.0] if mirrored else 1.0))[1]
                return self.pyrender.Mesh([self.pyrender.Primitive(
                    positions=vertices.astype(np.float32), normals=normals.astype(np.float32),
                    indices=faces.astype(np.uint32), color_0=colours[nearest].astype(np.float32) / 255.0, mode=4)])
            return self.pyrender.Mesh.from_trimesh(mirrored_copy(visual) if mirrored else visual, smooth=True)
        return self._get("full_visual" if full else "visual", asset, mirrored, build)


def split_object(item) -> tuple[object, np.ndarray, bool]:
    """``(asset, pose4x4)`` or ``(asset, pose4x4, mirrored)`` with the pose checked."""
    asset, pose, *rest = item
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise InputError(f"object {getattr(asset, 'name', '?')!r}: expected a finite 4x4 pose, got shape {pose.shape}")
    return asset, pose, bool(rest[0]) if rest else False
