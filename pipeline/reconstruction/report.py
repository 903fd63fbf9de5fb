"""Pictures and breakdowns of a reconstructor's predictions (``recon eval``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pipeline.hand.joints import CANONICAL_PARENTS

TRUE_COLOUR, PREDICTED_COLOUR = (60, 220, 60), (255, 60, 60)


def draw_skeleton(draw: ImageDraw.ImageDraw, points: np.ndarray, colour, scale: float, width: int = 2) -> None:
    points = (points + 0.5) * scale
    for joint, parent in enumerate(CANONICAL_PARENTS):
        if parent >= 0:
            draw.line([tuple(points[parent]), tuple(points[joint])], fill=colour, width=width)
    for u, v in points:
        draw.ellipse([u - 2, v - 2, u + 2, v + 2], fill=colour)


def worst_grid(images: list[np.ndarray], true_2d: np.ndarray, pred_2d: np.ndarray, labels: list[str],
               side: int = 192, columns: int = 4) -> np.ndarray:
    """Each image with the true (green) and predicted (red) skeletons, the sample and its error."""
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * side, rows * (side + 14)), (20, 20, 20))
    for index, (image, true, pred, label) in enumerate(zip(images, true_2d, pred_2d, labels)):
        panel = Image.fromarray(image).convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(panel)
        scale = side / image.shape[1]
        draw_skeleton(draw, true, TRUE_COLOUR, scale)
        draw_skeleton(draw, pred, PREDICTED_COLOUR, scale)
        x, y = (index % columns) * side, (index // columns) * (side + 14)
        grid.paste(panel, (x, y + 14))
        ImageDraw.Draw(grid).text((x + 3, y + 1), label[-34:], fill=(220, 220, 220))
    return np.asarray(grid)


def breakdown(errors_mm: np.ndarray, groups: list) -> dict[str, dict]:
    """Mean, median and count of per-sample errors by group value."""
    out = {}
    keys = ["null" if g is None else str(g) for g in groups]
    for key in sorted(set(keys)):
        values = errors_mm[[k == key for k in keys]]
        out[key] = {"count": int(values.size), "mean_mm": round(float(values.mean()), 3),
                    "median_mm": round(float(np.median(values)), 3)}
    return out
