"""Where the project keeps caches and finds user assets."""

from __future__ import annotations

import os
import threading
from pathlib import Path

FLOW_LOG = "flow.log"  # ``handbooster run``'s log, written in the output folder before the stage starts
CHECKPOINT_PREFIX = "checkpoint-"  # a trainer's checkpoints: checkpoint-NNNNNN/


def cache_dir(*parts: str) -> Path:
    """Cache root (``$HANDBOOSTER_CACHE`` or ``~/.cache/handbooster``), created on demand."""
    root = Path(os.environ.get("HANDBOOSTER_CACHE") or Path.home() / ".cache" / "handbooster")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` under a temporary name beside ``path`` and rename it into place (the name
    is per process and thread: two batches of a flow may fill the same cache entry at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def npz_bytes(arrays: dict) -> bytes:
    """Arrays as an uncompressed .npz (read back with allow_pickle=False)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.asarray(value) for key, value in arrays.items()})
    return buffer.getvalue()


def atomic_write_npz(path: str | Path, arrays: dict) -> Path:
    """Arrays as an uncompressed .npz, written atomically."""
    return atomic_write_bytes(path, npz_bytes(arrays))


def atomic_write_png(path: str | Path, image) -> Path:
    """An RGB/L uint8 array as a PNG, written atomically."""
    from pipeline.imaging import png_bytes

    return atomic_write_bytes(path, png_bytes(image))
