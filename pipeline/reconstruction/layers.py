"""Building blocks the reconstructors share: spiral convolutions over a mesh, mesh up-sampling,
soft-argmax 2D joints, features sampled at joints, the 6D rotation representation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpiralConv(nn.Module):
    """SpiralNet++: each vertex's features concatenated along its spiral ``[V, L]``, then linear."""

    def __init__(self, in_channels: int, out_channels: int, spiral: torch.Tensor):
        super().__init__()
        self.register_buffer("spiral", torch.as_tensor(spiral, dtype=torch.long), persistent=False)
        self.linear = nn.Linear(in_channels * self.spiral.shape[1], out_channels)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, V, C]`` -> ``[B, V, L * C]``: the features along every vertex's spiral."""
        batch, vertices, _ = x.shape
        return x[:, self.spiral.reshape(-1)].reshape(batch, vertices, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.gather(x))


class MeshUp(nn.Module):
    """Fine-level features as barycentric mixes of the coarse level's (``up [V_fine, V_coarse]``)."""

    def __init__(self, up: torch.Tensor):
        super().__init__()
        self.register_buffer("up", torch.as_tensor(up, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("vw,bwc->bvc", self.up.to(x.dtype), x)


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """``[B, J, H, W]`` logits -> ``[B, J, 2]`` expected (x, y) in [0, 1] of the image (pixel centres)."""
    batch, joints, height, width = heatmaps.shape
    probabilities = heatmaps.flatten(2).float().softmax(dim=-1).reshape(batch, joints, height, width)
    xs = (torch.arange(width, device=heatmaps.device, dtype=probabilities.dtype) + 0.5) / width
    ys = (torch.arange(height, device=heatmaps.device, dtype=probabilities.dtype) + 0.5) / height
    return torch.stack([(probabilities.sum(dim=2) * xs).sum(-1), (probabilities.sum(dim=3) * ys).sum(-1)], dim=-1)


def sample_at(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Features ``[B, C, H, W]`` bilinearly sampled at points ``[B, J, 2]`` in [0, 1] -> ``[B, J, C]``."""
    grid = (points * 2 - 1)[:, :, None, :].to(features.dtype)
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False)[..., 0].transpose(1, 2)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s continuous 6D representation ``[..., 6]`` -> rotation matrices ``[..., 3, 3]``."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-2)


class ResidualMLP(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.GELU(),
                                  nn.Linear(hidden, channels))

    def forward(self, x):
        return x + self.body(x)
