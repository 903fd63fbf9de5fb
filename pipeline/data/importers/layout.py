"""Reading the files of an official layout, with errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from pipeline.errors import BadData, InputError


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"missing {what}", path)
    return path


def read_yaml(path: Path, what: str) -> dict:
    try:
        data = yaml.safe_load(require_file(path, what).read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({exc})", path) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping in the {what}", path)
    return data


def read_json(path: Path, what: str):
    try:
        return json.loads(require_file(path, what).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def array_field(mapping, key: str, path: Path, shape: tuple | None = None, optional: bool = False):
    """``mapping[key]`` as float64 of ``shape`` (``None`` entries: any size); errors name file and key."""
    try:
        value = mapping[key]
    except (KeyError, TypeError, ValueError):
        if optional:
            return None
        raise InputError(f"missing key '{key}'", path) from None
    if shape is None:
        return value
    if value is None:
        if optional:
            return None
        raise InputError(f"key '{key}' is empty", path)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"key '{key}': expected numbers of shape {shape}", path) from None
    if array.size == int(np.prod([s for s in shape if s is not None])) and None not in shape:
        array = array.reshape(shape)
    if array.ndim != len(shape) or any(e is not None and e != s for e, s in zip(shape, array.shape)):
        raise InputError(f"key '{key}': expected shape {shape}, got {array.shape}", path)
    return array


def camera_matrix(K, path, key: str) -> np.ndarray:
    """``K`` checked to be a pinhole camera matrix: finite, positive focal lengths, last row 0 0 1."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise BadData(f"key '{key}': expected a camera matrix with positive focal lengths and last row 0 0 1, "
                      f"got {np.round(K, 3).tolist()}", path)
    return K
