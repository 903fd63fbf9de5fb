"""Procedural surface patterns for the embedded objects (numpy, deterministic).

Each embedded object paints its vertices from their positions and normals in the object
frame, so every object carries its own recognisable label, stripes, seams or grain into
the texture condition map.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def rgb(hex_code: str) -> np.ndarray:
    hex_code = hex_code.lstrip("#")
    return np.array([int(hex_code[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def band(x: np.ndarray, lo: float, hi: float, soft: float = 0.0008) -> np.ndarray:
    """1 where lo <= x <= hi, fading over ``soft`` metres."""
    return smoothstep(lo - soft, lo + soft, x) * (1 - smoothstep(hi - soft, hi + soft, x))


def stripes(x: np.ndarray, period: float, duty: float = 0.5) -> np.ndarray:
    return (np.mod(x / period, 1.0) < duty).astype(float)


def mix(base: np.ndarray, color, weight: np.ndarray) -> np.ndarray:
    """Blend ``color`` over ``base`` (N, 3) with per-point ``weight`` (N,)."""
    return base * (1 - weight[:, None]) + np.asarray(color, dtype=float)[None] * weight[:, None]


def fill(points: np.ndarray, color) -> np.ndarray:
    return np.tile(np.asarray(color, dtype=float), (len(points), 1))


def near_points(points: np.ndarray, targets: np.ndarray, radius: float) -> np.ndarray:
    """1 within ``radius`` of any target point, fading over the last third."""
    distance, _ = cKDTree(targets).query(points)
    return 1 - smoothstep(radius * 0.66, radius, distance)


def angle_about_z(points: np.ndarray) -> np.ndarray:
    return np.arctan2(points[:, 1], points[:, 0])


def grain(points: np.ndarray, scale: float) -> np.ndarray:
    """Smooth pseudo-random field in [0, 1] from fixed sums of sines (wood grain, mottling)."""
    directions = np.array([[0.8, 0.1, 0.6], [-0.3, 0.9, 0.3], [0.2, -0.4, 0.9], [0.7, 0.7, -0.1]])
    phases = np.array([0.3, 1.7, 2.9, 4.1])
    waves = np.sin(points @ directions.T / scale + phases)
    return 0.5 + 0.5 * waves.mean(axis=1)


def fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` nearly even unit directions."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * i / count)
    azimuth = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def ball_seam(radius: float, samples: int = 2000) -> np.ndarray:
    """Points along the seam of a tennis ball or baseball on a sphere of ``radius``."""
    t = np.linspace(0, 2 * np.pi, samples, endpoint=False)
    a, b = 0.7, 0.3
    curve = np.stack([a * np.cos(t) + b * np.cos(3 * t), a * np.sin(t) - b * np.sin(3 * t),
                      2 * np.sqrt(a * b) * np.sin(2 * t)], axis=1)
    return radius * curve / np.linalg.norm(curve, axis=1, keepdims=True)
