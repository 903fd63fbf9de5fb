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


class DynamicSpiralConv(SpiralConv):
    """M3DHMR's dynamic spiral convolution: ``kernels`` spiral kernels mixed per vertex by
    softmax weights that two layers compute from the vertex's own features (halving, then K).

    Kernel 0 is ``linear`` (SpiralConv's), so with one kernel this is a plain spiral convolution
    with the same weights; the paper found K = 8 best. The other kernels start as copies of
    kernel 0 and drift apart in training, since each vertex weighs them differently.
    """

    def __init__(self, in_channels: int, out_channels: int, spiral: torch.Tensor, kernels: int = 8):
        super().__init__(in_channels, out_channels, spiral)
        self.kernels = kernels
        if kernels > 1:
            self.extra = nn.Linear(in_channels * self.spiral.shape[1], out_channels * (kernels - 1))
            with torch.no_grad():  # every kernel starts as kernel 0: averaging K independent ones shrinks the signal
                self.extra.weight.copy_(self.linear.weight.repeat(kernels - 1, 1))
                self.extra.bias.copy_(self.linear.bias.repeat(kernels - 1))
            self.attention = nn.Sequential(nn.Linear(in_channels, max(1, in_channels // 2)), nn.ReLU(inplace=True),
                                           nn.Linear(max(1, in_channels // 2), kernels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = self.gather(x)
        out = self.linear(gathered)
        if self.kernels == 1:
            return out
        batch, vertices, _ = x.shape
        outputs = torch.cat([out[:, :, None], self.extra(gathered).reshape(batch, vertices, self.kernels - 1, -1)],
                            dim=2)
        weights = self.attention(x).softmax(dim=-1)  # [B, V, K]
        return (weights[..., None] * outputs).sum(dim=2)


class RegionSpiralConv(SpiralConv):
    """M3DHMR's region-of-interest layer: a dilated spiral convolution that sees only the
    vertices of the centre's own region (palm or one finger); the others contribute zeros."""

    def __init__(self, in_channels: int, out_channels: int, spiral: torch.Tensor, regions):
        super().__init__(in_channels, out_channels, spiral)
        regions = torch.as_tensor(regions, dtype=torch.long)
        inside = regions[self.spiral] == regions[:, None]  # [V, L]
        self.register_buffer("inside", inside, persistent=False)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        batch, vertices, channels = x.shape
        neighbours = x[:, self.spiral.reshape(-1)].reshape(batch, vertices, -1, channels)
        return (neighbours * self.inside[None, :, :, None].to(x.dtype)).reshape(batch, vertices, -1)


class AttentionBlock(nn.Module):
    """Pre-norm multi-head attention of queries over keys/values, then an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = ResidualMLP(dim, 2 * dim)

    def forward(self, queries, context=None):
        q = self.norm_q(queries)
        kv = q if context is None else self.norm_kv(context)
        return self.mlp(queries + self.attention(q, kv, kv, need_weights=False)[0])
