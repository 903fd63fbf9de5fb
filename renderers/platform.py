"""Pick the headless OpenGL platform once and import pyrender safely.

EGL is the default (Mesa's llvmpipe on CPU machines, the GPU driver where there is one);
OSMesa is the fallback. ``PYOPENGL_PLATFORM`` set by the user wins. pyrender 0.1.45 still uses
``np.infty``, removed in numpy 2; the alias is restored here and nowhere else.
"""

from __future__ import annotations

import ctypes.util
import functools
import os

from pipeline.errors import InputError

_LIBRARIES = {"egl": ("EGL", "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"), "osmesa": ("OSMesa", "libosmesa6")}


class RenderPlatformError(InputError):
    """No usable headless OpenGL platform."""


def choose_platform() -> str:
    """The platform to use: ``$PYOPENGL_PLATFORM``, else EGL, else OSMesa."""
    requested = os.environ.get("PYOPENGL_PLATFORM")
    if requested:
        return requested
    for platform, (library, _) in _LIBRARIES.items():
        if ctypes.util.find_library(library):
            return platform
    needed = "; ".join(f"{p}: lib{lib} (Debian: {pkgs})" for p, (lib, pkgs) in _LIBRARIES.items())
    raise RenderPlatformError(f"no headless OpenGL library found; install one of {needed}")


@functools.lru_cache(maxsize=1)
def import_pyrender():
    """pyrender, imported with the chosen platform (call this instead of ``import pyrender``)."""
    platform = choose_platform()
    os.environ["PYOPENGL_PLATFORM"] = platform
    import numpy as np

    if not hasattr(np, "infty"):
        np.infty = np.inf
    try:
        import pyrender
    except ImportError as exc:
        library, packages = _LIBRARIES.get(platform, (platform, "?"))
        raise RenderPlatformError(f"cannot load OpenGL platform '{platform}' ({exc}); install {packages}") from None
    return pyrender


_CONTEXTS: dict[tuple[int, int, int], object] = {}


def contexts_created() -> int:
    """How many GL contexts this process has opened (each renderer size opens one, once)."""
    return sum(1 for pid, *_ in _CONTEXTS if pid == os.getpid())


def offscreen_renderer(width: int, height: int):
    """The process's one offscreen context of this size, shared by every renderer and never closed.

    pyrender's EGL ``delete`` terminates the display that all contexts share, so closing one
    renderer breaks the others; contexts live until the process ends. Forked workers get their
    own. The context's shader cache is :class:`SwappablePrograms`.
    """
    key = (os.getpid(), int(width), int(height))
    if key not in _CONTEXTS:
        pyrender = import_pyrender()
        renderer = pyrender.OffscreenRenderer(int(width), int(height))
        renderer._renderer._program_cache = swappable_programs()  # pyrender 0.1.45 internals
        _CONTEXTS[key] = renderer
    return _CONTEXTS[key]


def swappable_programs():
    """pyrender's shader program cache, plus ``swaps``: {pyrender vertex shader name: (our vertex
    shader path, our fragment shader path)} used while set (see ConditionRenderer)."""
    from pyrender.shader_program import ShaderProgramCache

    class SwappablePrograms(ShaderProgramCache):
        swaps: dict = {}

        def get_program(self, vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            if vertex_shader in self.swaps:
                vertex_shader, fragment_shader = self.swaps[vertex_shader]
            return super().get_program(vertex_shader, fragment_shader, geometry_shader, defines)

    return SwappablePrograms()


def platform_status() -> dict:
    """Which platform works here: tries a 1x1 offscreen context."""
    try:
        offscreen_renderer(1, 1)
        return {"platform": os.environ["PYOPENGL_PLATFORM"], "ok": True}
    except Exception as exc:  # noqa: BLE001 - reported to the user, not raised
        return {"platform": os.environ.get("PYOPENGL_PLATFORM"), "ok": False, "error": str(exc).splitlines()[0]}
