"""Encoding pictures: arrays and matplotlib figures to PNG bytes, one way for every stage."""

from __future__ import annotations

import io
import threading

import numpy as np


def png_bytes(image) -> bytes:
    """A uint8 array (H x W, or H x W x 3) or a PIL image as PNG bytes."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# matplotlib's text layout (its mathtext parser, used by log-scale tick labels) is not
# thread-safe, and the flows train reconstructors in parallel threads that each draw curves.
_DRAWING = threading.Lock()


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed. One figure is drawn at a time."""
    buffer = io.BytesIO()
    with _DRAWING:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=dpi)
        pyplot().close(fig)
    return buffer.getvalue()
