"""Photo-style images for the embedded demo domain: what the conditions do not determine.

The demo dataset needs "real" images whose appearance varies beyond the condition maps, so
the synthesizer has something to learn: skin tone, light directions and colours, specular
highlights, shadows the hand casts on the object, backgrounds (gradients, noise textures,
clutter) and camera noise. Everything random comes from the seed: the same seed, scene and
settings give the same picture. Rendered with pyrender's own PBR shading and directional
shadows; the background is composited behind the antialiased alpha.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.hand.skin import random_skin_tone
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


def _light_colour(rng) -> np.ndarray:
    """Between warm (3000 K-ish) and cool (7500 K-ish) white."""
    warm, cool = np.array([1.0, 0.82, 0.62]), np.array([0.80, 0.88, 1.0])
    return warm + (cool - warm) * rng.uniform()


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural backdrop: gradient, smooth noise texture or blurred clutter, uint8 RGB."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[:size, :size] / max(size - 1, 1)
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
        a, b = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
        image = a + (b - a) * t[..., None]
    elif kind == 1:
        cells = int(rng.integers(3, 12))
        coarse = rng.uniform(0, 1, (cells, cells, 3)) * rng.uniform(0.3, 1.0) + rng.uniform(0, 0.4)
        image = np.asarray(Image.fromarray((np.clip(coarse, 0, 1) * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC)) / 255.0
        image = image + rng.normal(0, 0.03, image.shape)
    else:
        canvas = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(40, 220, 3)))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(6, 18))):
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
            w, h = rng.uniform(0.1, 0.6, 2) * size
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
        image = np.asarray(canvas.filter(ImageFilter.GaussianBlur(size / rng.uniform(40, 120)))) / 255.0
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


class PhotoRenderer:
    """``render(hand_vertices, hand_faces, objects, K, seed, skin_tone=None)`` -> uint8 RGB image."""

    def __init__(self, image_size: int = 256):
        self.image_size = int(image_size)
        self.pyrender = import_pyrender()
        self.meshes = MeshCache(self.pyrender)

    @property
    def renderer(self):
        """The process's offscreen context of this size, shared with the ConditionRenderer."""
        return offscreen_renderer(self.image_size, self.image_size)

    def render(self, hand_vertices, hand_faces, objects=(), K=None, seed: int = 0,
               skin_tone=None) -> np.ndarray:
        K = check_intrinsics(K)
        vertices, faces = check_mesh("hand", hand_vertices, hand_faces)
        rng = np.random.default_rng(seed)
        pr = self.pyrender
        skin = np.asarray(skin_tone, dtype=np.float64) if skin_tone is not None else random_skin_tone(rng)
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=rng.uniform(0.15, 0.35) * _light_colour(rng))
        camera = pr.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=ZNEAR, zfar=ZFAR)
        set_intrinsics(camera, K)
        scene.add(camera)
        key = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 0.5), -1.0])  # from the camera side, up to ~60 deg off
        key_light = pr.DirectionalLight(color=_light_colour(rng), intensity=rng.uniform(2.5, 4.5))
        fill = np.array([-key[0], rng.uniform(-0.5, 0.8), rng.uniform(-1.0, -0.3)])
        add_lights(pr, scene, [(key_light, key),
                               (pr.DirectionalLight(color=_light_colour(rng), intensity=rng.uniform(0.4, 1.2)), fill)])
        material = pr.MetallicRoughnessMaterial(baseColorFactor=[*skin, 1.0], metallicFactor=0.0,
                                                roughnessFactor=float(rng.uniform(0.45, 0.7)))
        scene.add(hand_mesh(pr, vertices, faces, material))
        for item in objects:
            asset, pose, mirrored = split_object(item)
            scene.add(self.meshes.visual(asset, mirrored, full=True), pose=FLIP4 @ pose)
        flags = pr.RenderFlags.RGBA | pr.RenderFlags.SHADOWS_DIRECTIONAL
        rgba, _ = self.renderer.render(scene, flags=flags)
        alpha = rgba[..., 3:4] / 255.0
        image = rgba[..., :3] + background(self.image_size, rng) * (1 - alpha)  # colours come premultiplied
        image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        blur = rng.uniform(0.0, 0.6)
        if blur > 0.2:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(1.0, 4.0), (*image.size[::-1], 3))
        return np.clip(noisy, 0, 255).round().astype(np.uint8)
