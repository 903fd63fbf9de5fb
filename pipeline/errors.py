"""Errors a user can act on.

Every failure caused by input (a file, a key, a shape, a config value) raises
:class:`InputError` with a one-line message naming the file and what was expected; the CLI
prints it and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a missing file, a wrong key or shape, an invalid value."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


def require_shape(name: str, array, expected: tuple, path: str | Path | None = None) -> None:
    """Check ``array.shape`` against ``expected`` (``None`` entries match any size)."""
    shape = tuple(array.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        pretty = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise InputError(f"'{name}' has shape {shape}, expected {pretty}", path)
