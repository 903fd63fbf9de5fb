"""Skin tones of rendered hands: a subject of the demo dataset draws one, the photo renderer
uses it (or draws its own)."""

from __future__ import annotations

import numpy as np

# Skin tones (linear-ish sRGB albedo) from light to dark; a subject picks one and jitters it.
SKIN_TONES = np.array([
    [0.93, 0.76, 0.65], [0.87, 0.67, 0.54], [0.80, 0.58, 0.45], [0.70, 0.49, 0.36],
    [0.58, 0.39, 0.27], [0.45, 0.30, 0.20], [0.33, 0.22, 0.15],
])


def random_skin_tone(rng: np.random.Generator) -> np.ndarray:
    base = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    return np.clip(base * rng.uniform(0.93, 1.07) + rng.normal(0, 0.015, 3), 0.05, 1.0)
