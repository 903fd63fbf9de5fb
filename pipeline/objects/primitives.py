"""Signed distance functions of simple solids, in torch (negative inside, metres).

They describe the embedded objects: marching cubes turns them into meshes, and where a
shape is one exact primitive (a sphere, a rounded box, a rounded cylinder, a solid of
revolution) whose mesh follows it closely, its function doubles as the object's
differentiable SDF. Every function
takes points ``p[..., 3]`` and returns distances ``[...]``; a *shape* is any such callable.
Combinators (union, smooth union, difference) give bounds rather than exact distances,
which is fine for meshing; objects built with them use a sampled grid for queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Shape = Callable[[torch.Tensor], torch.Tensor]


def _length(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with a zero (not NaN) gradient at the origin."""
    squared = (x * x).sum(dim=-1)
    safe = torch.where(squared > 0, squared, torch.ones_like(squared))
    return torch.where(squared > 0, safe.sqrt(), torch.zeros_like(squared))


def sphere(radius: float) -> Shape:
    return lambda p: _length(p) - radius


def rounded_box(half_extents, rounding: float) -> Shape:
    """Box centred at the origin with edges rounded by ``rounding`` (exact)."""
    half = torch.as_tensor(half_extents, dtype=torch.float64)

    def sdf(p):
        q = p.abs() - (half - rounding).to(p)
        return _length(q.clamp(min=0)) + q.amax(dim=-1).clamp(max=0) - rounding

    return sdf


def rounded_cylinder(radius: float, half_height: float, rounding: float) -> Shape:
    """Cylinder along z, centred at the origin, rims rounded by ``rounding`` (exact)."""

    def sdf(p):
        q = torch.stack([_length(p[..., :2]) - radius + rounding, p[..., 2].abs() - half_height + rounding], dim=-1)
        return _length(q.clamp(min=0)) + q.amax(dim=-1).clamp(max=0) - rounding

    return sdf


def capsule(start, end, radius: float) -> Shape:
    a = torch.as_tensor(start, dtype=torch.float64)
    b = torch.as_tensor(end, dtype=torch.float64)

    def sdf(p):
        ab = (b - a).to(p)
        ap = p - a.to(p)
        t = ((ap * ab).sum(dim=-1) / (ab * ab).sum()).clamp(0.0, 1.0)
        return _length(ap - t[..., None] * ab) - radius

    return sdf


def torus(major: float, minor: float) -> Shape:
    """Ring around the z axis."""
    return lambda p: _length(torch.stack([_length(p[..., :2]) - major, p[..., 2]], dim=-1)) - minor


def polygon_distance(q: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Exact signed distance from 2D points ``q[..., 2]`` to a closed simple polygon ``[K, 2]``."""
    polygon = polygon.to(q)
    best = ((q - polygon[0]) ** 2).sum(dim=-1)
    sign = torch.ones_like(best)
    count = len(polygon)
    for i in range(count):
        vi, vj = polygon[i], polygon[i - 1]
        edge = vj - vi
        w = q - vi
        t = ((w * edge).sum(dim=-1) / (edge * edge).sum()).clamp(0.0, 1.0)
        best = torch.minimum(best, ((w - t[..., None] * edge) ** 2).sum(dim=-1))
        above_i = q[..., 1] >= vi[1]
        below_j = q[..., 1] < vj[1]
        cross = edge[0] * w[..., 1] - edge[1] * w[..., 0] > 0
        flip = (above_i & below_j & cross) | (~above_i & ~below_j & ~cross)
        sign = torch.where(flip, -sign, sign)
    return sign * best.clamp(min=1e-24).sqrt()


def revolved(profile) -> Shape:
    """Solid of revolution about z of the 2D region ``profile`` [(radius, z), ...] (exact).

    The profile is a closed polygon in the half plane radius >= 0; its points on the axis
    close it. Cans, bottles, mugs, bowls, markers and handles are all of this kind.
    """
    polygon = torch.as_tensor(profile, dtype=torch.float64)
    return lambda p: polygon_distance(torch.stack([_length(p[..., :2]), p[..., 2]], dim=-1), polygon)


def arc_tube(arc_radius: float, start_angle: float, end_angle: float, radius: Callable[[torch.Tensor], torch.Tensor]) -> Shape:
    """Tube of varying radius along a circular arc in the xz plane centred at the origin.

    ``radius(u)`` gives the tube radius at arc parameter u in [0, 1]; the ends are rounded.
    """

    def sdf(p):
        angle = torch.atan2(p[..., 2], p[..., 0])
        u = ((angle - start_angle) / (end_angle - start_angle)).clamp(0.0, 1.0)
        theta = start_angle + u * (end_angle - start_angle)
        centre = torch.stack([arc_radius * torch.cos(theta), torch.zeros_like(theta), arc_radius * torch.sin(theta)], -1)
        return _length(p - centre) - radius(u)

    return sdf


def union(*shapes: Shape) -> Shape:
    def sdf(p):
        distances = [shape(p) for shape in shapes]
        result = distances[0]
        for d in distances[1:]:
            result = torch.minimum(result, d)
        return result

    return sdf


def smooth_union(a: Shape, b: Shape, blend: float) -> Shape:
    def sdf(p):
        da, db = a(p), b(p)
        h = (0.5 + 0.5 * (db - da) / blend).clamp(0.0, 1.0)
        return db * (1 - h) + da * h - blend * h * (1 - h)

    return sdf


def difference(a: Shape, b: Shape) -> Shape:
    return lambda p: torch.maximum(a(p), -b(p))


def intersection(a: Shape, b: Shape) -> Shape:
    return lambda p: torch.maximum(a(p), b(p))


def moved(shape: Shape, translation=(0.0, 0.0, 0.0), rotation=None) -> Shape:
    """``shape`` rotated by the 3x3 matrix ``rotation`` and then translated."""
    t = torch.as_tensor(translation, dtype=torch.float64)
    r = torch.eye(3, dtype=torch.float64) if rotation is None else torch.as_tensor(rotation, dtype=torch.float64)
    return lambda p: shape((p - t.to(p)) @ r.to(p))


def scaled(shape: Shape, factors) -> Shape:
    """Non-uniform scaling; the result is a distance bound (scaled by the smallest factor)."""
    s = torch.as_tensor(factors, dtype=torch.float64)
    return lambda p: shape(p / s.to(p)) * float(s.min())


def rotation_x(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
