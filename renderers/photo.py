"""Photo-style images for the embedded demo domain: what the conditions do not determine.

The demo dataset needs "real" images whose appearance varies beyond the condition maps, so
the synthesizer has something to learn: skin tone, light, specular highlights, shadows the
hand casts on the object, the room behind the hand and camera noise. Like a real capture
setup (DexYCB films one lab from eight fixed cameras, HO3D a few rooms), the demo is filmed
in ``STUDIOS`` rooms, each seen by ``CAMERAS`` cameras (``pipeline.demo.plan``): a studio camera has one backdrop
(a table, a wall, furniture and equipment, drawn once at full frame) and one light rig, and a
frame shows the part of its backdrop that lies behind its crop. What changes per sequence
is the material's roughness, focus blur and sensor noise, drawn from the sequence's seed.
Everything random comes from fixed seeds: the same seed, scene and studio give the same
picture. Rendered with pyrender's own PBR shading and directional shadows; the backdrop is
composited behind the antialiased alpha.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.demo.plan import CAMERAS, FULL_SIZE, STUDIOS
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

FULL_FRAME = FULL_SIZE  # the studio cameras' frame, in the pixels crop boxes are given in
MARGIN = 160  # backdrop drawn beyond the frame, for crops that reach past its edge
STUDIO_SEED = 20240917  # the studios are the same in every demo, whatever its seed


def _light_colour(rng) -> np.ndarray:
    """Between warm (3000 K-ish) and cool (7500 K-ish) white."""
    warm, cool = np.array([1.0, 0.82, 0.62]), np.array([0.80, 0.88, 1.0])
    return warm + (cool - warm) * rng.uniform()


def _smooth_noise(shape: tuple[int, int], cells: int, rng) -> np.ndarray:
    """Low-frequency noise in [0, 1] of ``shape`` (h, w): a coarse random grid, bicubic-upsampled."""
    coarse = (rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.Resampling.BICUBIC)) / 255.0


@functools.lru_cache(maxsize=STUDIOS * CAMERAS)
def backdrop(studio: int, camera: int) -> np.ndarray:
    """What studio ``studio``'s camera ``camera`` sees behind the hand: uint8 RGB of the full
    frame plus ``MARGIN`` on every side. The room's palette (wall, table, furniture) comes from
    the studio; the view (where the table's edge runs, which furniture shows where) from the camera."""
    room = np.random.default_rng([STUDIO_SEED, studio])
    view = np.random.default_rng([STUDIO_SEED, studio, camera])
    width, height = FULL_FRAME[0] + 2 * MARGIN, FULL_FRAME[1] + 2 * MARGIN
    wall, table = room.uniform(0.35, 0.85, 3), room.uniform(0.2, 0.7, 3)
    furniture = room.uniform(0.1, 0.9, (6, 3))
    yy, xx = np.mgrid[:height, :width] / np.array([height, width])[:, None, None]
    edge = view.uniform(0.3, 0.65) + view.uniform(-0.25, 0.25) * (xx - 0.5)  # the table's far edge, tilted
    grain = _smooth_noise((height, width), int(room.integers(20, 60)), room)[..., None]
    image = np.where((yy < edge)[..., None], wall * (0.85 + 0.15 * yy[..., None]),
                     table * (0.8 + 0.4 * grain))
    canvas = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(view.integers(4, 9))):  # shelves, boxes, monitors, posters on the wall
        x0 = view.uniform(-0.1, 1.0) * width
        w, h = view.uniform(0.08, 0.3) * width, view.uniform(0.1, 0.4) * height
        bottom = float(edge.mean()) * height * view.uniform(0.6, 1.02)
        colour = tuple(int(c * 255) for c in furniture[int(view.integers(len(furniture)))])
        draw.rectangle([x0, bottom - h, x0 + w, bottom], fill=colour)
    image = np.asarray(canvas.filter(ImageFilter.GaussianBlur(3.0)), dtype=np.float64) / 255.0
    vignette = 1.0 - 0.35 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    light = 0.85 + 0.3 * _smooth_noise((height, width), 4, view)
    picture = (np.clip(image * (vignette * light)[..., None], 0, 1) * 255).astype(np.uint8)
    picture.setflags(write=False)  # cached and shared by every frame of the studio camera
    return picture


def backdrop_crop(studio: int, camera: int, crop_box, size: int) -> np.ndarray:
    """The part of a studio camera's backdrop behind ``crop_box`` (x0, y0, x1, y1 in full-frame
    pixels; None: the frame's centred square), resized to ``size``."""
    if crop_box is None:
        side = min(FULL_FRAME)
        crop_box = ((FULL_FRAME[0] - side) / 2, (FULL_FRAME[1] - side) / 2, (FULL_FRAME[0] + side) / 2,
                    (FULL_FRAME[1] + side) / 2)
    x0, y0, x1, y1 = (float(v) + MARGIN for v in crop_box)
    picture = backdrop(studio, camera)
    height, width = picture.shape[:2]
    pad = [int(np.ceil(max(0.0, -y0))), int(np.ceil(max(0.0, y1 - height))),
           int(np.ceil(max(0.0, -x0))), int(np.ceil(max(0.0, x1 - width)))]
    if any(pad):  # a crop reaching past the margin: the backdrop's edge continues
        picture = np.pad(picture, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0)), mode="edge")
        x0, x1, y0, y1 = x0 + pad[2], x1 + pad[2], y0 + pad[0], y1 + pad[0]
    image = Image.fromarray(picture)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=None))


def studio_lights(pr, studio: int, camera: int) -> tuple[np.ndarray, list]:
    """The ambient light and the (light, direction) rig of a studio camera (directions in its frame)."""
    rng = np.random.default_rng([STUDIO_SEED, studio, camera, 1])
    ambient = rng.uniform(0.15, 0.35) * _light_colour(rng)
    key = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 0.5), -1.0])  # from the camera side, up to ~60 deg off
    key_light = pr.DirectionalLight(color=_light_colour(rng), intensity=rng.uniform(2.5, 4.5))
    fill = np.array([-key[0], rng.uniform(-0.5, 0.8), rng.uniform(-1.0, -0.3)])
    fill_light = pr.DirectionalLight(color=_light_colour(rng), intensity=rng.uniform(0.4, 1.2))
    return ambient, [(key_light, key), (fill_light, fill)]


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
               skin_tone=None, studio: tuple[int, int] | None = None, crop_box=None) -> np.ndarray:
        """``studio``: (room, camera), else one drawn from ``seed``; ``crop_box``: where the
        image lies in that camera's full frame, else its centre."""
        K = check_intrinsics(K)
        vertices, faces = check_mesh("hand", hand_vertices, hand_faces)
        rng = np.random.default_rng(seed)
        if studio is None:
            studio = (int(rng.integers(STUDIOS)), int(rng.integers(CAMERAS)))
        pr = self.pyrender
        skin = np.asarray(skin_tone, dtype=np.float64) if skin_tone is not None else random_skin_tone(rng)
        ambient, lights = studio_lights(pr, *studio)
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=ambient)
        camera = pr.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=ZNEAR, zfar=ZFAR)
        set_intrinsics(camera, K)
        scene.add(camera)
        add_lights(pr, scene, lights)
        material = pr.MetallicRoughnessMaterial(baseColorFactor=[*skin, 1.0], metallicFactor=0.0,
                                                roughnessFactor=float(rng.uniform(0.45, 0.7)))
        scene.add(hand_mesh(pr, vertices, faces, material))
        for item in objects:
            asset, pose, mirrored = split_object(item)
            scene.add(self.meshes.visual(asset, mirrored, full=True), pose=FLIP4 @ pose)
        flags = pr.RenderFlags.RGBA | pr.RenderFlags.SHADOWS_DIRECTIONAL
        rgba, _ = self.renderer.render(scene, flags=flags)
        alpha = rgba[..., 3:4] / 255.0
        behind = backdrop_crop(*studio, crop_box, self.image_size)
        image = rgba[..., :3] + behind * (1 - alpha)  # colours come premultiplied
        image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        blur = rng.uniform(0.0, 0.6)
        if blur > 0.2:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(1.0, 4.0), (*image.size[::-1], 3))
        return np.clip(noisy, 0, 255).round().astype(np.uint8)
