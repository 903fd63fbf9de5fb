"""Shaded previews of meshes from a few viewpoints (exports, contact sheets, README pictures)."""

from __future__ import annotations

import numpy as np

from renderers.platform import import_pyrender, offscreen_renderer
from renderers.scene import look_at

SKIN = (0.80, 0.57, 0.45)


def render_views(meshes, directions, up=(0.0, 1.0, 0.0), size: int = 384,
                 background=(0.96, 0.96, 0.96)) -> np.ndarray:
    """Render ``meshes`` from each view direction, side by side.

    Each item is ``(vertices, faces, rgb)`` for a plain coloured mesh, or a ``trimesh.Trimesh``
    drawn with its own vertex colours or texture. Each view frames the meshes' bounding
    sphere; returns an RGB uint8 image.
    """
    import trimesh

    pyrender = import_pyrender()
    scene = pyrender.Scene(bg_color=list(background) + [1.0], ambient_light=[0.25] * 3)
    points = np.concatenate([np.asarray(m.vertices if isinstance(m, trimesh.Trimesh) else m[0]) for m in meshes])
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    radius = np.linalg.norm(points - centre, axis=1).max()
    for item in meshes:
        if isinstance(item, trimesh.Trimesh):
            scene.add(pyrender.Mesh.from_trimesh(item, smooth=True))
            continue
        vertices, faces, color = item
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=list(color) + [1.0], metallicFactor=0.0,
                                                      roughnessFactor=0.7)
        mesh = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False)
        scene.add(pyrender.Mesh.from_trimesh(mesh, material=material, smooth=True))
    yfov = np.deg2rad(30.0)
    distance = radius / np.sin(yfov / 2) * 1.05
    camera = pyrender.PerspectiveCamera(yfov=yfov, znear=distance * 0.05, zfar=distance * 4)
    camera_node = scene.add(camera)
    light_node = scene.add(pyrender.DirectionalLight(intensity=2.2))
    fill_node = scene.add(pyrender.DirectionalLight(intensity=0.8))
    renderer = offscreen_renderer(size, size)  # shared: deleting one context would end them all
    panels = []
    for direction in directions:
        direction = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
        view_up = np.asarray(up, dtype=float)
        if abs(direction @ view_up) > 0.99:
            view_up = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        pose = look_at(centre + distance * direction, centre, view_up)
        scene.set_pose(camera_node, pose)
        scene.set_pose(light_node, pose @ _tilt(0.5, 0.4))
        scene.set_pose(fill_node, pose @ _tilt(-0.7, -0.3))
        color, _ = renderer.render(scene)
        panels.append(color)
    return np.concatenate(panels, axis=1)


def _tilt(yaw: float, pitch: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("yx", [yaw, pitch]).as_matrix()
    return pose


def hand_picture(vertices: np.ndarray, faces: np.ndarray, size: int = 384) -> np.ndarray:
    """Back, palm and three-quarter views of a hand, side by side."""
    return render_views([(vertices, faces, SKIN)], [(0, 1, 1e-4), (0, -1, 1e-4), (0.35, 0.45, 1.0)], size=size)
