"""How good are the synthesizer's images? Fréchet distances and condition fidelity.

Fréchet distance: between the pooled features of generated and real images, from the
ImageNet network whose weights ship in a package here (EfficientNet-Lite0: its last block,
320 channels, average-pooled, inputs resized to 224 px). It is **not** comparable with
published FID numbers, which use an Inception-v3 whose weights cannot be downloaded here; it
ranks synthesizers on this machine's terms, and with a few hundred images its absolute value
carries the small-sample bias every FID has. So it is read beside two references on the same
features and the same number of images: the plain renders (the test rows' texture maps as
images: what a synthesizer must beat) and the real floor (a real training split against the
test: what real images of another sequence score).

Condition fidelity: the real test images are re-synthesised from their own conditions, and
the filter's reconstructor is scored on both: if the DDPM paints the hand its conditions
describe, the errors on the re-synthesised images approach those on the real ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FEATURE_SIZE = 224


def dataset_images(where, limit: int | None = None, column: str = "image", spread: bool = False) -> torch.Tensor:
    """``limit`` (default: all) images of a dataset folder's ``column``, uint8 ``[N, 3, H, W]``:
    its first rows, or with ``spread`` rows evenly spaced over the whole dataset (every sequence)."""
    from pipeline.data.reader import ShardDataset

    data = ShardDataset(where, columns=[column])
    count = len(data) if limit is None else min(limit, len(data))
    rows = np.linspace(0, len(data) - 1, count).round().astype(int) if spread else range(count)
    return torch.stack([data[int(i)][column] for i in rows])


@torch.no_grad()
def image_features(images: torch.Tensor, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """uint8 ``[N, 3, H, W]`` -> ``[N, 320]`` pooled EfficientNet-Lite0 features (ImageNet weights)."""
    from pipeline.reconstruction.backbones import Lite0Encoder

    network = Lite0Encoder(pretrained=True).eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float()
        x = F.interpolate(x, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = (x - 127.0) / 128.0  # the Lite models' input normalisation
        out.append(network(x)[-1].mean(dim=(2, 3)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.channels[-1]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)`` of two feature sets."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular products: nudge the diagonals, as the reference FID code does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)))
