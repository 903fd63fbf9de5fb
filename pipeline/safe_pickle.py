"""Unpickle files from outside without running anything they ask for.

Two kinds of outside pickles reach this project: the official MANO model (a Python-2 pickle
holding chumpy objects and scipy sparse matrices) and HO3D's per-frame ``meta/*.pkl`` files
(dicts of numpy arrays). :class:`AllowListUnpickler` resolves only the numpy and builtin
names such files need, maps chumpy and scipy sparse classes to inert stand-ins that just keep
their state, and refuses every other class by name before anything runs.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np


class _Inert:
    """Base of the stand-ins: accepts any constructor arguments and keeps its state."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.__dict__["pickled_state"] = state


class ChumpyStandIn(_Inert):
    """Holds a chumpy object's pickled state; its value is the ``x`` entry."""


class SparseStandIn(_Inert):
    """Holds a scipy sparse matrix's pickled state (data, indices, indptr, shape)."""

    fmt = "csc"


class CsrStandIn(SparseStandIn):
    fmt = "csr"


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` restricted to our stand-ins built on ``object``."""
    if not (isinstance(cls, type) and issubclass(cls, _Inert)) or base is not object:
        raise pickle.UnpicklingError(f"refused to reconstruct {cls!r} on {base!r}")
    return object.__new__(cls)


def _ndarray_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused ndarray subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"refused numpy scalar of dtype {dtype!r}")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _frombuffer(buffer, dtype, shape, order):
    """How protocol-5 pickles store arrays; object arrays are refused."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"refused array of dtype {dtype!r}")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order=order).copy()


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """Python 3 writes bytes in protocol-2 pickles as ``_codecs.encode(str, 'latin1')``."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


_ALLOWED: dict[tuple[str, str], Any] = {}
for _module in ("copy_reg", "copyreg"):
    _ALLOWED[(_module, "_reconstructor")] = _reconstructor
for _module in ("__builtin__", "builtins"):
    _ALLOWED[(_module, "object")] = object
    _ALLOWED[(_module, "set")] = set  # chumpy keeps bookkeeping sets
    _ALLOWED[(_module, "frozenset")] = frozenset
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _ndarray_reconstruct
    _ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = _codecs_encode
for _module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
    _ALLOWED[(_module, "csc_matrix")] = SparseStandIn
for _module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
    _ALLOWED[(_module, "csr_matrix")] = CsrStandIn


class AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed names; chumpy is never imported."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        raise pickle.UnpicklingError(f"refused class '{module}.{name}' (not on the allow-list)")


def safe_loads(raw: bytes) -> Any:
    """Unpickle ``raw`` through the allow-list (latin1 for Python-2 strings)."""
    return AllowListUnpickler(io.BytesIO(raw), encoding="latin1").load()
