"""``data inspect``: what is in a dataset, counted and drawn."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.data.manifest import read_columns, read_manifest
from pipeline.data.schema import KINDS
from pipeline.errors import BadData, InputError
from pipeline.hand.joints import CANONICAL_PARENTS
from pipeline.paths import atomic_write_png

COUNT_COLUMNS = ("source", "split", "object_id", "origin")
PANELS = ("image", "normal", "texture", "mask")
MASK_COLOURS = np.array([[0, 0, 0], [235, 180, 140], [70, 150, 230]], dtype=np.uint8)
FINGER_COLOURS = [(255, 60, 60), (255, 200, 0), (60, 220, 60), (0, 200, 255), (200, 90, 255)]


def _counts(where, manifest) -> dict[str, dict[str, int]]:
    present = [c for c in COUNT_COLUMNS if c in KINDS[manifest["kind"]].schema.names]
    _, table = read_columns(where, present)
    return {column: dict(sorted(Counter("null" if v is None else str(v)
                                        for v in table.column(column).to_pylist()).items()))
            for column in present if table.num_rows}


def _panel(data: bytes | None, column: str, side: int, sample_id=None) -> Image.Image:
    if data is None:
        panel = Image.new("RGB", (side, side), (45, 45, 45))
        ImageDraw.Draw(panel).text((4, side // 2 - 6), f"no {column}", fill=(160, 160, 160))
        return panel
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadData(f"sample {sample_id!r}: column '{column}': does not decode as PNG ({exc}); run "
                      "'handbooster data validate --deep'") from None
    if column == "mask":
        image = Image.fromarray(MASK_COLOURS[np.clip(np.asarray(image), 0, 2)])
    return image.convert("RGB").resize((side, side), Image.Resampling.NEAREST)


def draw_joints(panel: Image.Image, joints_2d, image_size: int) -> None:
    """The 21 canonical joints (crop pixels) on a panel ``image_size`` pixels wide before scaling."""
    if joints_2d is None:
        return
    scale = panel.width / image_size
    points = (np.asarray(joints_2d, dtype=np.float64).reshape(21, 2) + 0.5) * scale
    draw = ImageDraw.Draw(panel)
    radius = max(1.5, panel.width / 90)
    for joint, parent in enumerate(CANONICAL_PARENTS):
        colour = FINGER_COLOURS[(joint - 1) // 4] if joint else (255, 255, 255)
        if parent >= 0:
            draw.line([tuple(points[parent]), tuple(points[joint])], fill=colour, width=max(1, int(radius / 1.5)))
        u, v = points[joint]
        draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=colour)


def sample_grid(rows: list[dict], image_size: int, side: int = 160) -> np.ndarray:
    """One line per row: image | normal | texture | mask, joints drawn on each, id on top."""
    header = 16
    grid = Image.new("RGB", (side * len(PANELS), header + (side + header) * len(rows)), (20, 20, 20))
    draw = ImageDraw.Draw(grid)
    for p, name in enumerate(PANELS):
        draw.text((p * side + 4, 2), name, fill=(230, 230, 230))
    for r, row in enumerate(rows):
        top = header + r * (side + header)
        label = str(row.get("sample_id"))
        draw.text((4, top + 2), label if len(label) <= 48 else "..." + label[-45:], fill=(200, 200, 200))
        for p, column in enumerate(PANELS):
            panel = _panel(row.get(column), column, side, row.get("sample_id"))
            draw_joints(panel, row.get("joints_2d"), image_size)
            grid.paste(panel, (p * side, top + header))
    return np.asarray(grid)


def inspect_dataset(where, out: str | Path | None = None, samples: int = 8, seed: int = 0) -> dict:
    """Counts by source, split, object and origin; with ``out``, a PNG grid of random samples."""
    from pipeline.data.reader import ShardDataset

    location, manifest = read_manifest(where)
    result = {"dataset": str(location), "name": manifest["name"], "kind": manifest["kind"], "rows": manifest["rows"],
              "shards": len(manifest["shards"]), "image_size": manifest.get("image_size"),
              "counts": _counts(where, manifest)}
    if out is not None:
        columns = ["sample_id", "joints_2d", *PANELS]
        dataset = ShardDataset(where, columns=columns, decode=False)
        if not len(dataset):
            raise InputError("has no rows to show", location)
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(dataset), size=min(samples, len(dataset)), replace=False).tolist())
        atomic_write_png(Path(out), sample_grid([dataset.raw(i) for i in picks], manifest.get("image_size") or 128))
        result["grid"] = str(out)
        result["grid_samples"] = len(picks)
    return result
