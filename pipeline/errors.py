"""Errors a user (or a program calling the library) can act on.

Every failure caused by input (a file, a key, a shape, a config value) or by the environment
(a missing GPU or GL library, a read-only disk) raises an :class:`InputError` subclass with a
one-line message naming the file or parameter and what was expected; the command line prints
it and exits with code 2. Library messages name parameters (``overwrite=True``); the command
line adds its own flag hints. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a missing file, a wrong key or shape, an invalid value."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(InputError):
    """A config value (from YAML, a flag or a Prefect parameter) that fails validation."""


class DatasetConflict(InputError):
    """An output folder that holds something else, is being written by another process, or is an input."""


class MissingResource(InputError):
    """Something the run needs that this machine lacks: a GPU, a GL library, free disk space."""


class BadData(InputError):
    """Data that cannot be used: a shard that does not decode, a refused checkpoint, a wrong shape."""


class Diverged(InputError):
    """A training whose loss stopped being a number: its settings (the learning rate, the
    precision) need changing, and everything it would go on to save or score would be NaN."""


def require_shape(name: str, array, expected: tuple, path: str | Path | None = None) -> None:
    """Check ``array.shape`` against ``expected`` (``None`` entries match any size)."""
    shape = tuple(array.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        pretty = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise BadData(f"'{name}' has shape {shape}, expected {pretty}", path)
