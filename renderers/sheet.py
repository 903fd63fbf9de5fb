"""Contact sheet of an object library: one shaded, textured view per object, labelled."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.config import ObjectsConfig
from pipeline.errors import InputError
from renderers.preview import render_views

VIEW_DIRECTION = (0.55, -0.75, 0.45)  # from the front, a little above and to the side


def contact_sheet(assets, cell_size: int = 224, columns: int = 5) -> np.ndarray:
    """RGB uint8 grid of ``assets`` (ObjectAsset), each framed on its own, name and size below."""
    from PIL import Image, ImageDraw

    label_height = 30
    rows = max(1, math.ceil(len(assets) / columns))
    sheet = Image.new("RGB", (columns * cell_size, rows * (cell_size + label_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, asset in enumerate(assets):
        image = render_views([asset.visual], [VIEW_DIRECTION], up=(0.0, 0.0, 1.0), size=cell_size)
        x, y = (index % columns) * cell_size, (index // columns) * (cell_size + label_height)
        sheet.paste(Image.fromarray(image), (x, y))
        size_cm = " x ".join(f"{e * 100:.1f}" for e in asset.extents)
        draw.text((x + 6, y + cell_size + 2), asset.name, fill=(20, 20, 20))
        draw.text((x + 6, y + cell_size + 15), f"{asset.category}, {size_cm} cm", fill=(90, 90, 90))
    return np.asarray(sheet)


def grasp_sheet(grasps: dict, indices, hand_model, library: str, cell_size: int = 224, columns: int = 6) -> np.ndarray:
    """RGB uint8 grid of grasp records (``grasps``: column arrays, ``indices``: rows to draw), each
    hand with its object in a three-quarter view from the hand's side, the table's up direction up."""
    import torch
    from PIL import Image, ImageDraw

    from pipeline.data.schema import pose12_matrix
    from pipeline.objects import load_object_library
    from renderers.preview import SKIN

    objects = load_object_library(library)
    label_height = 18
    rows = max(1, math.ceil(len(indices) / columns))
    sheet = Image.new("RGB", (columns * cell_size, rows * (cell_size + label_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for cell, row in enumerate(indices):
        asset = objects[str(grasps["object_id"][row])]
        with torch.no_grad():
            vertices, _ = hand_model(*(torch.as_tensor(grasps[c][row][None], dtype=hand_model.dtype)
                                       for c in ("hand_pose", "hand_betas", "hand_trans")))
        vertices = vertices[0].cpu().numpy()
        up = pose12_matrix(grasps["resting_pose"][row])[2, :3]
        toward_hand = vertices.mean(axis=0) - asset.vertices.mean(axis=0)
        toward_hand /= max(np.linalg.norm(toward_hand), 1e-9)
        direction = np.cross(up, toward_hand) + 0.7 * toward_hand + 0.5 * up  # three-quarter view
        image = render_views([(vertices, hand_model.closed_faces, SKIN), asset.visual], [direction], up=up,
                             size=cell_size)
        x, y = (cell % columns) * cell_size, (cell // columns) * (cell_size + label_height)
        sheet.paste(Image.fromarray(image), (x, y))
        draw.text((x + 6, y + cell_size + 2), f"{grasps['grasp_id'][row]}  "
                  f"{float(grasps['sim_displacement_mm'][row]):.0f} mm", fill=(20, 20, 20))
    return np.asarray(sheet)


def object_sheet(config: ObjectsConfig, out: Path, names: list[str] | None = None, columns: int = 5) -> dict:
    """Render a labelled contact sheet of the library to ``out`` (PNG)."""
    from pipeline.objects import load_object_library
    from pipeline.paths import atomic_write_png

    if out.suffix.lower() != ".png":
        raise InputError("expected a .png output path", out)
    library = load_object_library(config.library)
    assets = library.select(names)
    atomic_write_png(out, contact_sheet(assets, columns=columns))
    return {"library": library.source, "objects": len(assets), "out": str(out)}
