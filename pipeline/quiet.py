"""Keep native libraries' chatter (pybullet's banner, VHACD's progress) off the terminal.

pybullet prints from C, below Python's ``sys.stdout``, to stdout or stderr depending on the
build, so both file descriptors are redirected, and C's stdio buffers are flushed before
they are restored so nothing leaks out later. Failures still surface as Python exceptions.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def silenced_native_output():
    """Send everything written to file descriptors 1 and 2 to /dev/null inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    _flush_c_stdio()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _flush_c_stdio()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def import_pybullet():
    """``import pybullet`` without its build-time banner."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    with silenced_native_output():
        import pybullet
    return pybullet
