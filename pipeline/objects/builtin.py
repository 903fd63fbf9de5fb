"""The embedded object library: 20 household objects of hand-graspable size, built by our code.

Each object is a solid described by signed distance primitives (boxes, cans, solids of
revolution for bottles, a mug, a bowl, a marker and a screwdriver; a bent tube for the
banana; unions for the mug handle, the hammer and the apple stem) and a procedural paint
that gives it its own label, stripes, seams or grain. Sizes and masses follow their YCB
namesakes. The object frame is centred on the bounding box, z along the long or symmetry
axis; units are metres and kilograms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.objects import paint as pt
from pipeline.objects import primitives as sd

Paint = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ObjectSpec:
    """Recipe for one embedded object."""

    name: str
    category: str
    shape: sd.Shape
    half_extents: tuple[float, float, float]  # a box that contains the solid, for meshing
    paint: Paint
    density: float  # kg/m^3 of the solid (effective, for hollow or partly filled objects)
    friction: float
    exact: bool  # ``shape`` is an exact signed distance (used as the SDF if the mesh follows it)


def _profile(rings: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Closed (radius, z) polygon from rings listed bottom to top, closed along the axis."""
    return [(0.0, rings[0][1]), *rings, (0.0, rings[-1][1])]


def _radial(points: np.ndarray) -> np.ndarray:
    return np.hypot(points[:, 0], points[:, 1])


def _lids(points, normals, colors, lid_color):
    return pt.mix(colors, lid_color, pt.smoothstep(0.75, 0.9, np.abs(normals[:, 2])))


# --------------------------------------------------------------------------- boxes


def _paint_cracker(p, n):
    c = pt.fill(p, pt.rgb("c8102e"))
    front = pt.smoothstep(0.6, 0.8, np.abs(n[:, 1]))
    c = pt.mix(c, pt.rgb("f6c90e"), front * pt.band(p[:, 2], 0.035, 0.075))
    logo = ((p[:, 0] / 0.05) ** 2 + ((p[:, 2] + 0.015) / 0.03) ** 2 < 1).astype(float)
    c = pt.mix(c, pt.rgb("fbf7ee"), front * logo)
    c = pt.mix(c, pt.rgb("1c2f7a"), pt.band(p[:, 2], -0.09, -0.072))
    return c


def _paint_sugar(p, n):
    c = pt.fill(p, pt.rgb("f4f1e8"))
    c = pt.mix(c, pt.rgb("f2c500"), pt.band(p[:, 2], -0.09, -0.025))
    front = pt.smoothstep(0.6, 0.8, np.abs(n[:, 1]))
    c = pt.mix(c, pt.rgb("d3342b"), front * pt.band(p[:, 2], 0.015, 0.06) * pt.band(p[:, 0], -0.03, 0.03))
    return c


def _paint_gelatin(p, n):
    c = pt.fill(p, pt.rgb("d9345a"))
    c = pt.mix(c, pt.rgb("f8eef0"), pt.band(p[:, 0], -0.012, 0.004))
    return pt.mix(c, pt.rgb("7a1030"), pt.band(p[:, 1], 0.022, 0.03) * pt.band(p[:, 0], 0.015, 0.035))


def _paint_foam(p, n):
    c = pt.fill(p, pt.rgb("b5312b"))
    return pt.mix(c, pt.rgb("6e1712"), pt.smoothstep(0.72, 0.8, pt.grain(p, 0.0012)))


def _paint_wood(p, n):
    c = pt.fill(p, pt.rgb("cda36a"))
    rings = pt.stripes(p[:, 0] + 0.003 * np.sin(p[:, 2] / 0.011) + 0.002 * np.sin(p[:, 1] / 0.007), 0.006, 0.35)
    return pt.mix(c, pt.rgb("9c6c36"), 0.7 * rings)


# --------------------------------------------------------------------------- cans


def _paint_soup(p, n):
    c = np.where((p[:, 2] > 0.0)[:, None], pt.rgb("c31f1f"), pt.rgb("f0ede6"))
    medal = ((np.arctan2(p[:, 1], p[:, 0]) / 0.35) ** 2 + ((p[:, 2] + 0.022) / 0.011) ** 2 < 1).astype(float)
    c = pt.mix(c, pt.rgb("c9a44c"), medal)
    return _lids(p, n, c, pt.rgb("b9a06a"))


def _paint_tuna(p, n):
    c = pt.fill(p, pt.rgb("1f4e9c"))
    c = pt.mix(c, pt.rgb("f2c81b"), pt.band(p[:, 2], -0.004, 0.004))
    return _lids(p, n, c, pt.rgb("c0c4c8"))


def _paint_coffee(p, n):
    c = pt.fill(p, pt.rgb("1b2f6b"))
    c = pt.mix(c, pt.rgb("f5f2ea"), pt.band(p[:, 2], 0.005, 0.035))
    c = pt.mix(c, pt.rgb("a5442a"), pt.band(p[:, 2], -0.03, -0.015) * pt.stripes(pt.angle_about_z(p), 0.5, 0.5))
    return _lids(p, n, c, pt.rgb("8e9296"))


# --------------------------------------------------------------------------- bottles, mug, bowl


def _paint_water_bottle(p, n):
    c = pt.fill(p, pt.rgb("a8d4ec"))
    c = pt.mix(c, pt.rgb("f7f9fb"), pt.band(p[:, 2], -0.045, 0.01))
    c = pt.mix(c, pt.rgb("2b6cb8"), pt.band(p[:, 2], -0.03, -0.015))
    c = pt.mix(c, pt.rgb("7fb6d9"), pt.stripes(p[:, 2], 0.012, 0.2) * pt.band(p[:, 2], -0.1, -0.05))
    return pt.mix(c, pt.rgb("1d3f8f"), pt.smoothstep(0.084, 0.086, p[:, 2]))


def _paint_mustard(p, n):
    c = pt.fill(p, pt.rgb("f5c800"))
    label = (((p[:, 0]) / 0.03) ** 2 + ((p[:, 2] + 0.02) / 0.04) ** 2 < 1).astype(float)
    c = pt.mix(c, pt.rgb("2a58a8"), label * pt.smoothstep(0.3, 0.6, np.abs(n[:, 1])))
    return pt.mix(c, pt.rgb("d62a1e"), pt.smoothstep(0.064, 0.067, p[:, 2]))


def _paint_mug(p, n):
    c = pt.fill(p, pt.rgb("e8742c"))
    inside = (_radial(p) < 0.0372) & (p[:, 2] > -0.0415)
    c = np.where(inside[:, None], pt.rgb("f2efe9"), c)
    return pt.mix(c, pt.rgb("f2efe9"), pt.smoothstep(0.046, 0.047, p[:, 2]))


def _paint_bowl(p, n):
    c = pt.fill(p, pt.rgb("c42a26"))
    radial_dir = p[:, :2] / np.maximum(_radial(p), 1e-9)[:, None]
    inward = (np.sum(radial_dir * n[:, :2], axis=1) < -0.05) | ((n[:, 2] > 0.5) & (p[:, 2] < 0.02))
    c = np.where(inward[:, None], pt.rgb("e26a5a"), c)
    return pt.mix(c, pt.rgb("f4efe6"), inward * pt.band(p[:, 2], 0.008, 0.014))


# --------------------------------------------------------------------------- balls, fruit


def _paint_tennis(p, n):
    c = pt.fill(p, pt.rgb("cfe23a"))
    return pt.mix(c, pt.rgb("f6f6ee"), pt.near_points(p, pt.ball_seam(0.0335), 0.0028))


def _paint_baseball(p, n):
    c = pt.fill(p, pt.rgb("f3efe6"))
    seam = pt.ball_seam(0.0365, samples=4000)
    distance, index = pt.cKDTree(seam).query(p)
    stitches = ((distance > 0.0015) & (distance < 0.0045) & (index // 25 % 2 == 0)).astype(float)
    return pt.mix(c, pt.rgb("c5221f"), stitches)


def _paint_golf(p, n):
    c = pt.fill(p, pt.rgb("f7f7f5"))
    return pt.mix(c, pt.rgb("b9bcc2"), pt.near_points(p, 0.0214 * pt.fibonacci_sphere(240), 0.0016))


def _paint_apple(p, n):
    c = pt.mix(pt.fill(p, pt.rgb("b8171b")), pt.rgb("c9be3a"), 0.8 * pt.smoothstep(0.55, 0.8, pt.grain(p, 0.008))
               * pt.smoothstep(0.02, -0.03, p[:, 2]))
    return np.where(((p[:, 2] > 0.027) & (_radial(p) < 0.005))[:, None], pt.rgb("5a3a1e"), c)


_BANANA = dict(arc=0.11, start=-0.75 * math.pi, end=-0.25 * math.pi, lift=0.0939)


def _banana_u(p: np.ndarray) -> np.ndarray:
    angle = np.arctan2(p[:, 2] - _BANANA["lift"], p[:, 0])
    return np.clip((angle - _BANANA["start"]) / (_BANANA["end"] - _BANANA["start"]), 0, 1)


def _paint_banana(p, n):
    u = _banana_u(p)
    c = pt.mix(pt.fill(p, pt.rgb("f2d23c")), pt.rgb("9fb43a"), pt.smoothstep(0.2, 0.0, u) * 0.8)
    c = pt.mix(c, pt.rgb("6b4a22"), 0.8 * pt.smoothstep(0.83, 0.9, pt.grain(p, 0.003)))
    return pt.mix(c, pt.rgb("3e2d16"), np.maximum(pt.smoothstep(0.05, 0.02, u), pt.smoothstep(0.96, 0.985, u)))


# --------------------------------------------------------------------------- marker, tools


def _paint_marker(p, n):
    c = pt.fill(p, pt.rgb("f4f4f2"))
    c = pt.mix(c, pt.rgb("1f5fbf"), pt.band(p[:, 2], -0.035, -0.005))
    return np.where(((p[:, 2] > 0.02) | (p[:, 2] < -0.052))[:, None], pt.rgb("1d1f24"), c)


def _paint_screwdriver(p, n):
    c = pt.fill(p, pt.rgb("c8202a"))
    grip = pt.stripes(pt.angle_about_z(p), 2 * math.pi / 8, 0.35) * pt.band(p[:, 2], -0.085, -0.02)
    c = pt.mix(c, pt.rgb("1c1c1e"), grip)
    return np.where((p[:, 2] > -0.001)[:, None], pt.rgb("b8bcc2"), c)


def _paint_hammer(p, n):
    wood = pt.mix(pt.fill(p, pt.rgb("b07a3e")), pt.rgb("8a5a2b"), 0.6 * pt.stripes(p[:, 0] + 0.002 * np.sin(p[:, 2] / 0.01), 0.004, 0.3))
    c = np.where((p[:, 2] < -0.05)[:, None], pt.rgb("23252a"), wood)
    return np.where((p[:, 2] > 0.081)[:, None], pt.rgb("4a4d55"), c)


# --------------------------------------------------------------------------- the library


def _banana_shape() -> sd.Shape:
    tube = sd.arc_tube(_BANANA["arc"], _BANANA["start"], _BANANA["end"],
                       lambda u: 0.0065 + 0.0115 * torch.sin(math.pi * u).clamp(min=0) ** 0.6)
    return sd.moved(tube, translation=(0.0, 0.0, _BANANA["lift"]))


def _mug_shape() -> sd.Shape:
    body = sd.revolved([(0.0, -0.0475), (0.037, -0.0475), (0.04, -0.0445), (0.04, 0.0475), (0.0365, 0.0475),
                        (0.0365, -0.041), (0.0, -0.041)])
    ring = sd.moved(sd.torus(0.026, 0.0058), translation=(0.039, 0.0, 0.0), rotation=sd.rotation_x(math.pi / 2))
    handle = sd.intersection(ring, lambda p: 0.0385 - p[..., 0])
    return sd.smooth_union(body, handle, 0.003)


def _bowl_profile() -> list[tuple[float, float]]:
    s = np.linspace(0.0, math.pi / 2, 24)
    outer = [(0.08 * math.sin(a), 0.0275 - 0.055 * math.cos(a)) for a in s]
    inner = [(0.0755 * math.sin(a), 0.0275 - 0.0505 * math.cos(a)) for a in s[::-1]]
    return outer + inner


def _apple_shape() -> sd.Shape:
    phi = np.linspace(0.3, math.pi - 0.3, 28)
    rings = [(0.039 * math.sin(a) * (1 + 0.05 * math.cos(a)), -0.035 * math.cos(a)) for a in phi]
    body = sd.revolved([(0.0, -0.028), *rings, (0.0, 0.029)])
    stem = sd.capsule((0.0, 0.0, 0.024), (0.002, 0.0, 0.042), 0.0022)
    return sd.union(body, stem)


def _specs() -> list[ObjectSpec]:
    spec = ObjectSpec
    return [
        spec("cracker_box", "box", sd.rounded_box((0.08, 0.03, 0.105), 0.003), (0.08, 0.03, 0.105), _paint_cracker, 200, 0.5, True),
        spec("sugar_box", "box", sd.rounded_box((0.045, 0.019, 0.0875), 0.003), (0.045, 0.019, 0.0875), _paint_sugar, 850, 0.5, True),
        spec("gelatin_box", "box", sd.rounded_box((0.0425, 0.035, 0.014), 0.003), (0.0425, 0.035, 0.014), _paint_gelatin, 580, 0.5, True),
        spec("foam_brick", "box", sd.rounded_box((0.025, 0.0375, 0.025), 0.006), (0.025, 0.0375, 0.025), _paint_foam, 60, 1.0, True),
        spec("wood_block", "block", sd.rounded_box((0.0425, 0.0425, 0.1), 0.002), (0.0425, 0.0425, 0.1), _paint_wood, 600, 0.6, True),
        spec("tomato_soup_can", "can", sd.rounded_cylinder(0.0335, 0.051, 0.003), (0.0335, 0.0335, 0.051), _paint_soup, 900, 0.4, True),
        spec("tuna_can", "can", sd.rounded_cylinder(0.043, 0.0168, 0.003), (0.043, 0.043, 0.0168), _paint_tuna, 1000, 0.4, True),
        spec("coffee_can", "can", sd.rounded_cylinder(0.051, 0.07, 0.004), (0.051, 0.051, 0.07), _paint_coffee, 600, 0.4, True),
        spec("water_bottle", "bottle", sd.revolved(_profile([
            (0.028, -0.11), (0.032, -0.108), (0.033, -0.104), (0.033, 0.03), (0.03, 0.05), (0.017, 0.07),
            (0.0135, 0.078), (0.0135, 0.085), (0.0155, 0.086), (0.0155, 0.108), (0.0145, 0.11)])),
             (0.033, 0.033, 0.11), _paint_water_bottle, 700, 0.5, True),
        spec("mustard_bottle", "bottle", sd.scaled(sd.revolved(_profile([
            (0.04, -0.095), (0.045, -0.091), (0.045, 0.035), (0.04, 0.05), (0.028, 0.06), (0.015, 0.064),
            (0.0135, 0.08), (0.006, 0.091), (0.003, 0.095)])), (1.0, 0.62, 1.0)),
             (0.045, 0.028, 0.095), _paint_mustard, 650, 0.5, False),
        spec("mug", "mug", _mug_shape(), (0.0715, 0.04, 0.0475), _paint_mug, 2300, 0.5, False),
        spec("bowl", "bowl", sd.revolved(_bowl_profile()), (0.08, 0.08, 0.0275), _paint_bowl, 1100, 0.5, True),
        spec("tennis_ball", "ball", sd.sphere(0.0335), (0.0335,) * 3, _paint_tennis, 360, 0.9, True),
        spec("baseball", "ball", sd.sphere(0.0365), (0.0365,) * 3, _paint_baseball, 710, 0.6, True),
        spec("golf_ball", "ball", sd.sphere(0.0214), (0.0214,) * 3, _paint_golf, 1120, 0.6, True),
        spec("apple", "fruit", _apple_shape(), (0.041, 0.041, 0.043), _paint_apple, 800, 0.6, False),
        spec("banana", "fruit", _banana_shape(), (0.09, 0.02, 0.036), _paint_banana, 950, 0.6, False),
        spec("marker", "marker", sd.revolved(_profile([
            (0.0035, -0.068), (0.006, -0.062), (0.0085, -0.053), (0.0095, -0.05), (0.0095, 0.02), (0.0105, 0.021),
            (0.0105, 0.066), (0.009, 0.068)])), (0.0105, 0.0105, 0.068), _paint_marker, 600, 0.5, True),
        spec("screwdriver", "tool", sd.revolved(_profile([
            (0.011, -0.1), (0.0145, -0.097), (0.016, -0.09), (0.016, -0.015), (0.013, -0.004), (0.009, 0.0),
            (0.009, 0.012), (0.0038, 0.016), (0.0038, 0.09), (0.0016, 0.098)])),
             (0.016, 0.016, 0.1), _paint_screwdriver, 1200, 0.8, True),
        spec("hammer", "tool", sd.smooth_union(sd.moved(sd.rounded_cylinder(0.0135, 0.105, 0.004), (0.0, 0.0, -0.01)),
                                              sd.moved(sd.rounded_box((0.055, 0.016, 0.016), 0.004), (0.0, 0.0, 0.1)), 0.004),
             (0.055, 0.016, 0.116), _paint_hammer, 3000, 0.8, False),
    ]


BUILTIN_SPECS: dict[str, ObjectSpec] = {s.name: s for s in _specs()}
