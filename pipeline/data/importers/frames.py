"""What every importer produces, and the crop geometry they share.

An importer reads an official layout into :class:`SourceFrame` records: the hand already in
the canonical conventions of its own side (flat-hand axis-angle, OpenCV camera frame,
canonical joint order), the full-image intrinsics and the image path. Mirroring of left hands
and the crop happen afterwards, once, in :mod:`pipeline.data.importers.run`.

Crop geometry (boxes, intrinsics of a crop) is in :mod:`pipeline.camera`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.imaging import png_bytes

MIRROR = np.diag([-1.0, 1.0, 1.0])


@dataclass
class SourceFrame:
    """One annotated image of a dataset, before cropping (arrays are float64 numpy)."""

    sample_id: str
    image_path: Path
    sequence_id: str
    frame: int
    side: str
    K: np.ndarray  # [3, 3] of the full image
    pose: np.ndarray | None = None  # [48] flat-hand axis-angle for a hand of ``side``
    betas: np.ndarray | None = None  # [10]
    trans: np.ndarray | None = None  # [3]
    joints_3d: np.ndarray | None = None  # [21, 3] canonical order, metres, OpenCV
    joints_2d: np.ndarray | None = None  # [21, 2] full-image pixels, when the dataset stores them
    object_id: str | None = None
    object_rotation: np.ndarray | None = None  # [3, 3] object to camera
    object_translation: np.ndarray | None = None  # [3]
    skip: str | None = None  # reason this frame is not imported
    extra: dict = field(default_factory=dict)


class HandModels:
    """Right and left hand models of one MANO file (or the builtin), loaded when first needed."""

    def __init__(self, spec: str):
        self.spec = spec
        self._models: dict = {}

    def __call__(self, side: str):
        """The model of ``side`` in float64, so that conversions and checks lose nothing."""
        if side not in self._models:
            import torch

            from pipeline.hand import load_hand_model

            self._models[side] = load_hand_model(self.spec, side=side, dtype=torch.float64)
        return self._models[side]


def crop_image_png(path: Path, box, size: int, mirrored: bool) -> bytes:
    """The box of the image (black outside it), resized to ``size`` and flipped if mirrored, as PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            crop = image.convert("RGB").crop(tuple(box)).resize((size, size), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read the image ({exc})", path) from None
    if mirrored:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return png_bytes(crop)
