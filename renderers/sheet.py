"""Contact sheet of an object library: one shaded, textured view per object, labelled."""

from __future__ import annotations

import math

import numpy as np

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
