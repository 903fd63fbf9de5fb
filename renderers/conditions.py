"""Condition maps for the synthesizer: normal, texture, mask and depth of a hand-object scene.

One scene, one reused GL context, rendered straight into the crop (K is the crop's) in three
passes over the same nodes, with pyrender's shaders swapped for two of ours (``shaders/``):

1. normals (pyrender's unlit pass, ``normal_map`` shader): each pixel's interpolated normal in
   the OpenGL camera frame ×0.5+0.5, so a surface facing the camera is (128, 128, 255); black
   background;
2. texture (pyrender's lit pass, ``texture_map`` shader): the hand in one flat skin material
   (1.0, 1.0, 0.9), objects with their own colours or textures, ambient 0.3 and three
   directional lights of 0.8 fixed to the camera (the public code's setup), shaded Lambert
   only: pyrender's PBR shader costs 4-5x more per fragment on CPU for specular highlights
   that a condition map does not need;
3. segmentation, without antialiasing: mask 0 background / 1 hand / 2 object, and the depth
   buffer in metres (0 on the background).

Objects are drawn from their watertight solid in passes 1 and 3 and from their visual mesh
(painted or textured, often 4x the faces) in pass 2; both are uploaded once and re-posed.
Only the hand's mesh is rebuilt per call, its open wrist capped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from renderers.platform import import_pyrender, offscreen_renderer
from renderers.scene import (
    FLIP4,
    ZFAR,
    ZNEAR,
    MeshCache,
    add_lights,
    check_intrinsics,
    check_mesh,
    hand_mesh,
    set_intrinsics,
    split_object,
)

HAND_TEXTURE_RGB = (1.0, 1.0, 0.9)
SHADERS = Path(__file__).parent / "shaders"
# pyrender's unlit program draws normals, its lit one diffuse-only shading (module docstring).
SHADER_SWAPS = {name: (str(SHADERS / f"{ours}.vert"), str(SHADERS / f"{ours}.frag"))
                for name, ours in (("flat.vert", "normal_map"), ("mesh.vert", "texture_map"))}
# Directions the three texture-pass lights shine towards, in the OpenGL camera frame.
LIGHT_DIRECTIONS = ((0.5, -0.6, -1.0), (-0.7, -0.2, -1.0), (0.0, 0.8, -0.6))
HAND_LABEL, OBJECT_LABEL = 1, 2


class ConditionRenderer:
    """``render(hand_vertices, hand_faces, objects, K)`` -> normal, texture, mask, depth."""

    def __init__(self, image_size: int = 256):
        self.image_size = int(image_size)
        self.pyrender = pr = import_pyrender()
        self.meshes = MeshCache(pr)
        self._camera = pr.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=ZNEAR, zfar=ZFAR)
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[0.3] * 3)
        self.scene.add(self._camera)
        add_lights(pr, self.scene, [(pr.DirectionalLight(color=np.ones(3), intensity=0.8), direction)
                                    for direction in LIGHT_DIRECTIONS])
        self._hand_material = pr.MetallicRoughnessMaterial(baseColorFactor=[*HAND_TEXTURE_RGB, 1.0],
                                                           metallicFactor=0.0, roughnessFactor=1.0)

    @property
    def renderer(self):
        """The process's offscreen context of this size (created once, shared, reused)."""
        return offscreen_renderer(self.image_size, self.image_size)

    def add_objects(self, objects, seg_map: dict) -> tuple[list, list]:
        """Solid and visual nodes of each object (the solid one labelled for segmentation)."""
        solids, visuals = [], []
        for item in objects:
            asset, pose, mirrored = split_object(item)
            gl_pose = FLIP4 @ pose
            solid = self.scene.add(self.meshes.solid_mesh(asset, mirrored), pose=gl_pose)
            seg_map[solid] = (OBJECT_LABEL,) * 3
            solids.append(solid)
            visuals.append(self.scene.add(self.meshes.visual(asset, mirrored), pose=gl_pose))
        return solids, visuals

    @staticmethod
    def _show(nodes, visible: bool) -> None:
        for node in nodes:
            node.mesh.is_visible = visible

    def render(self, hand_vertices, hand_faces, objects=(), K=None) -> dict[str, np.ndarray]:
        """Maps of one scene: ``hand_vertices [V, 3]`` and object poses (4x4, object to camera) in
        the OpenCV camera frame, ``K`` of the ``image_size`` crop. Objects are ``(asset, pose)`` or
        ``(asset, pose, mirrored)``; a mirrored object is its asset reflected through its x = 0 plane."""
        K = check_intrinsics(K)
        vertices, faces = check_mesh("hand", hand_vertices, hand_faces)
        set_intrinsics(self._camera, K)
        pr = self.pyrender
        hand_node = self.scene.add(hand_mesh(pr, vertices, faces, self._hand_material))
        seg_map = {hand_node: (HAND_LABEL,) * 3}
        solids, visuals = [], []
        programs = self.renderer._renderer._program_cache
        try:
            programs.swaps = SHADER_SWAPS
            solids, visuals = self.add_objects(objects, seg_map)
            self._show(solids, True)
            self._show(visuals, False)
            normal, _ = self.renderer.render(self.scene, flags=pr.RenderFlags.FLAT)
            segmentation, depth = self.renderer.render(self.scene, flags=pr.RenderFlags.SEG, seg_node_map=seg_map)
            self._show(solids, False)
            self._show(visuals, True)
            texture, _ = self.renderer.render(self.scene)
        finally:
            programs.swaps = {}
            for node in [hand_node, *solids, *visuals]:
                self.scene.remove_node(node)
        return {"normal": normal, "texture": texture, "mask": np.ascontiguousarray(segmentation[..., 0]),
                "depth": depth.astype(np.float32)}

    def render_batch(self, scenes, progress: bool = True, total: int | None = None):
        """Yield the maps of each ``(hand_vertices, hand_faces, objects, K)`` with a progress bar."""
        for scene in tqdm(scenes, desc="render conditions", unit="scene", total=total, disable=not progress):
            yield self.render(*scene)
