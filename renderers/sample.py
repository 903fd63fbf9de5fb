"""Render a labelled sample: the one way the demo, the previews and the render stages draw a row.

A row's labels (hand pose, betas, translation, K, object and its pose, mirrored) give the
scene; :class:`SampleRenderer` draws its condition maps (normal, texture, mask) and, when
asked, a photo-style image, as PNG bytes ready for a shard. One GL context per image size is
shared by both renderers and reused for every sample.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.schema import pose12_matrix
from pipeline.imaging import png_bytes

MAPS = ("normal", "texture", "mask")
LABEL_COLUMNS = ["hand_pose", "hand_betas", "hand_trans", "K", "object_id", "object_pose", "mirrored", "crop_box"]


def scene_of(labels: dict, hand_model, library) -> dict:
    """Hand vertices, objects ``[(asset, pose 4x4, mirrored)]``, K and crop box (or None) of one row's labels."""
    with torch.no_grad():
        vertices, _ = hand_model(*(torch.as_tensor(np.asarray(labels[k], np.float64))[None].to(hand_model.dtype)
                                   for k in ("hand_pose", "hand_betas", "hand_trans")))
    objects = []
    if labels.get("object_id") is not None and labels.get("object_pose") is not None:
        objects.append((library[labels["object_id"]], pose12_matrix(labels["object_pose"]),
                        bool(labels.get("mirrored"))))
    crop_box = labels.get("crop_box")
    return {"vertices": vertices[0].double().numpy(), "objects": objects,
            "K": np.asarray(labels["K"], np.float64).reshape(3, 3),
            "crop_box": None if crop_box is None else np.asarray(crop_box, np.float64)}


class SampleRenderer:
    """``render(scene, faces, photo_seed=None, skin=None, studio=None)`` -> PNG bytes of the maps (+ image)."""

    def __init__(self, image_size: int):
        self.image_size = int(image_size)
        self._conditions = self._photo = None

    @property
    def conditions(self):
        if self._conditions is None:
            from renderers.conditions import ConditionRenderer

            self._conditions = ConditionRenderer(self.image_size)
        return self._conditions

    @property
    def photo(self):
        if self._photo is None:
            from renderers.photo import PhotoRenderer

            self._photo = PhotoRenderer(self.image_size)
        return self._photo

    def render(self, scene: dict, faces: np.ndarray, maps: bool = True, photo_seed: int | None = None,
               skin=None, studio: tuple[int, int] | None = None) -> dict[str, bytes]:
        """``scene``: vertices, objects, K and crop box (:func:`scene_of`); the maps, and with
        ``photo_seed`` the photo-style ``image`` (``skin`` tone and ``studio`` camera, else drawn
        from the seed; the backdrop behind the scene's crop box)."""
        out = {}
        if maps:
            rendered = self.conditions.render(scene["vertices"], faces, scene["objects"], scene["K"])
            out.update({name: png_bytes(rendered[name]) for name in MAPS})
        if photo_seed is not None:
            out["image"] = png_bytes(self.photo.render(scene["vertices"], faces, scene["objects"], scene["K"],
                                                       seed=photo_seed, skin_tone=skin, studio=studio,
                                                       crop_box=scene.get("crop_box")))
        return out
