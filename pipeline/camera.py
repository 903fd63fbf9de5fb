"""Pinhole camera maths shared by importers, sampling and renderers: projection and crops.

Pixel coordinates follow OpenCV: the centre of pixel ``i`` is at ``i``. Crop boxes are
integer pixel-edge boxes ``(x0, y0, x1, y1)``: pixel ``x0`` is the first one inside. A crop
of side ``s`` resized to ``size`` pixels, and flipped left-right when the sample is a
mirrored left hand, has its own intrinsics (:func:`crop_intrinsics`).
"""

from __future__ import annotations

import numpy as np

MIN_DEPTH_M = 0.02  # a hand closer to the camera plane than this is treated as behind it


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``[..., 3]`` camera points to ``[..., 2]`` pixels."""
    uvw = points @ np.asarray(K).T
    return uvw[..., :2] / uvw[..., 2:3]


def square_box(points_2d: np.ndarray, scale: float, min_side: int = 16) -> tuple[int, int, int, int]:
    """Integer square box around ``points_2d`` (pixel centres), its side ``scale`` times theirs."""
    low, high = points_2d.min(axis=0), points_2d.max(axis=0)
    centre = (low + high) / 2 + 0.5  # pixel-edge coordinates
    side = max(int(np.ceil(float((high - low).max() + 1) * scale)), min_side)
    x0, y0 = (int(np.floor(c - side / 2)) for c in centre)
    return x0, y0, x0 + side, y0 + side


def crop_points(points_2d: np.ndarray, box, size: int, mirrored: bool) -> np.ndarray:
    """Full-image pixel coordinates into crop pixels (after resizing, and flipping if mirrored)."""
    x0, y0, x1, _ = box
    scale = size / (x1 - x0)
    out = (np.asarray(points_2d, dtype=np.float64) + 0.5 - np.array([x0, y0])) * scale - 0.5
    if mirrored:
        out[..., 0] = size - 1 - out[..., 0]
    return out


def crop_intrinsics(K: np.ndarray, box, size: int, mirrored: bool) -> np.ndarray:
    """Intrinsics of the crop: project camera points (mirrored if ``mirrored``) into crop pixels."""
    x0, y0, x1, _ = box
    scale = size / (x1 - x0)
    out = np.array(K, dtype=np.float64)
    out[0, :] *= scale
    out[1, :] *= scale
    out[0, 2] = (K[0, 2] + 0.5 - x0) * scale - 0.5
    out[1, 2] = (K[1, 2] + 0.5 - y0) * scale - 0.5
    if mirrored:  # u' = size - 1 - u for the point mirrored in x: fx stays, cx moves
        out[0, 1] = -out[0, 1]
        out[0, 2] = size - 1 - out[0, 2]
    return out


def outer_crop_box(crop_box, inner_box, size: int, mirrored: bool) -> np.ndarray:
    """A box given in a crop's pixels (``inner_box``) as a box in the original image."""
    x0, y0, x1, y1 = np.asarray(crop_box, dtype=np.float64)
    scale = (x1 - x0) / size
    ix0, iy0, ix1, iy1 = np.asarray(inner_box, dtype=np.float64)
    if mirrored:
        ix0, ix1 = size - ix1, size - ix0
    return np.array([x0 + ix0 * scale, y0 + iy0 * scale, x0 + ix1 * scale, y0 + iy1 * scale])
