"""Keep native libraries' chatter (pybullet's banner, VHACD's progress) off the terminal.

pybullet prints from C, below Python's ``sys.stdout``, to stdout or stderr depending on the
build, so both file descriptors are redirected, and C's stdio buffers are flushed before
they are restored so nothing leaks out later. Failures still surface as Python exceptions.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


_LOCK = threading.Lock()
_STATE = {"depth": 0, "saved": None}


def _reset_in_child() -> None:
    """A forked child starts with a free lock and no redirection of its own to undo."""
    global _LOCK
    _LOCK = threading.Lock()
    _STATE.update(depth=0, saved=None)


os.register_at_fork(after_in_child=_reset_in_child)


@contextmanager
def silenced_native_output():
    """Send everything written to file descriptors 1 and 2 to /dev/null inside the block.

    The descriptors belong to the process, so threads share one redirection: the first to enter
    saves and redirects, the last to leave restores (two threads each saving and restoring on
    their own could leave the terminal pointing at /dev/null for good)."""
    with _LOCK:
        if _STATE["depth"] == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            _flush_c_stdio()
            _STATE["saved"] = [os.dup(1), os.dup(2)]
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                _flush_c_stdio()
                for fd, copy in zip((1, 2), _STATE["saved"]):
                    os.dup2(copy, fd)
                    os.close(copy)
                _STATE["saved"] = None


def import_pybullet():
    """``import pybullet`` without its build-time banner."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    with silenced_native_output():
        import pybullet
    return pybullet
