"""Read and write MANO model files without chumpy and without trusting the pickle.

The official ``MANO_RIGHT.pkl`` is a Python-2 protocol-2 pickle that holds chumpy objects and
scipy sparse matrices, sometimes under module paths that no longer exist. Unpickling it with
``pickle.load`` would import chumpy (which no longer imports on Python 3.11 / numpy 2) and run
whatever the file asks for. :mod:`pipeline.safe_pickle` instead maps the handful of classes the
file needs to inert stand-ins and refuses every other class by name, before anything runs.
The result is a dict of plain numpy arrays, which :func:`save_npz` stores and
:func:`load_model_arrays` reads back with ``allow_pickle=False``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError, require_shape
from pipeline.paths import atomic_write_npz
from pipeline.safe_pickle import ChumpyStandIn, SparseStandIn, safe_loads

NUM_JOINTS = 16

# key -> expected shape; None matches any size (V vertices, F faces).
MODEL_KEYS: dict[str, tuple] = {
    "v_template": (None, 3),
    "shapedirs": (None, 3, None),
    "posedirs": (None, 3, (NUM_JOINTS - 1) * 9),
    "J_regressor": (NUM_JOINTS, None),
    "weights": (None, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "f": (None, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}


# Keys this project adds to its own model files (the builtin hand); optional elsewhere.
OPTIONAL_KEYS: dict[str, tuple] = {"tip_vertex_ids": (5,)}


def _plain_value(key: str, value: Any, path: Path) -> Any:
    """Turn stand-ins into numpy arrays."""
    if isinstance(value, ChumpyStandIn):
        state = value.__dict__.get("pickled_state") or {}
        if not isinstance(state, dict) or "x" not in state:
            raise InputError(f"key '{key}' is a chumpy object without a value 'x'", path)
        return np.asarray(_plain_value(key, state["x"], path))
    if isinstance(value, SparseStandIn):
        from scipy import sparse

        state = value.__dict__.get("pickled_state") or {}
        try:
            shape = tuple(state.get("_shape") or state["shape"])
            parts = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
        except (KeyError, TypeError):
            raise InputError(f"key '{key}' is a sparse matrix missing data/indices/indptr/shape", path) from None
        matrix_cls = sparse.csr_matrix if value.fmt == "csr" else sparse.csc_matrix
        return np.asarray(matrix_cls(parts, shape=shape).toarray())
    return value


def read_mano_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official MANO pickle into plain arrays (see module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read MANO file ({exc.strerror})", path) from None
    try:
        data = safe_loads(raw)
    except pickle.UnpicklingError as exc:
        raise InputError(f"not a loadable MANO pickle: {exc}", path) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InputError(f"corrupt MANO pickle ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a dict of model arrays, got {type(data).__name__}", path)
    return {str(k): _plain_value(str(k), v, path) for k, v in data.items()}


def check_model_arrays(arrays: dict[str, Any], path: str | Path) -> dict[str, np.ndarray]:
    """Keep the model keys, as numpy arrays of the right shapes; errors name key and shape."""
    out: dict[str, np.ndarray] = {}
    for key, shape in MODEL_KEYS.items():
        if key not in arrays:
            raise InputError(f"missing key '{key}' (a MANO model needs {', '.join(MODEL_KEYS)})", path)
        value = np.asarray(arrays[key])
        if value.dtype == object:
            raise InputError(f"key '{key}' holds Python objects, expected a numeric array", path)
        require_shape(key, value, shape, path)
        out[key] = value
    for key, shape in OPTIONAL_KEYS.items():
        if key in arrays:
            out[key] = np.asarray(arrays[key])
            require_shape(key, out[key], shape, path)
    num_vertices = out["v_template"].shape[0]
    for key in ("shapedirs", "posedirs", "weights"):
        if out[key].shape[0] != num_vertices:
            raise InputError(f"'{key}' has {out[key].shape[0]} vertices, v_template has {num_vertices}", path)
    if out["J_regressor"].shape[1] != num_vertices:
        raise InputError(f"'J_regressor' has {out['J_regressor'].shape[1]} columns, expected {num_vertices}", path)
    if out["shapedirs"].shape[2] < 10:
        raise InputError(f"'shapedirs' has {out['shapedirs'].shape[2]} shape directions, expected 10", path)
    if out["f"].min() < 0 or out["f"].max() >= num_vertices:
        raise InputError(f"'f' indexes vertices outside 0..{num_vertices - 1}", path)
    return out


def load_model_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Model arrays from a ``.pkl`` (allow-listed) or ``.npz`` (no pickle) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("MANO model file not found", path)
    if path.suffix == ".pkl":
        arrays = read_mano_pickle(path)
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"not a readable npz without pickled objects ({exc})", path) from None
    else:
        raise InputError("expected a MANO .pkl or .npz file", path)
    return check_model_arrays(arrays, path)


def save_npz(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write model arrays as an npz (atomically)."""
    keys = list(MODEL_KEYS) + [k for k in OPTIONAL_KEYS if k in arrays]
    return atomic_write_npz(path, {k: arrays[k] for k in keys})
