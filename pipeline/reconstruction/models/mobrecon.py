"""MobRecon-style reconstructor: 2D joints lifted onto a spiral mesh decoder.

An encoder gives feature maps at strides 4-32; a heatmap head at stride 8 gives the 21 2D
joints (soft-argmax); the stride-8 features sampled at those joints, with the pooled global
feature, are lifted to the coarsest mesh level by a learned ``[V_coarse, 21]`` matrix
(initialised at 0.01, as MobRecon's); spiral convolutions then up-sample level by level to
the full mesh, whose root-relative coordinates a last spiral convolution reads out (in
decimetres, so the numbers are near 1). Joints come from the hand model's regressor.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn

from pipeline.reconstruction.backbones import make_backbone
from pipeline.reconstruction.layers import MeshUp, SpiralConv, sample_at, soft_argmax
from pipeline.reconstruction.models.base import Reconstructor

UNIT_M = 0.1  # the decoder's outputs are in decimetres


def decoder_channels(width: int, levels: int) -> list[int]:
    """Coarsest to finest: ``width``, halving per level, at least 16 (MobRecon: 256, 128, 64, 32)."""
    return [max(16, width // 2 ** i) for i in range(levels)]


class SpiralUpBlock(nn.Module):
    """Up-sample one level, then a spiral convolution (MobRecon's SpiralDeblock)."""

    def __init__(self, in_channels: int, out_channels: int, up, spiral, conv=SpiralConv):
        super().__init__()
        self.up = MeshUp(up)
        self.conv = conv(in_channels, out_channels, spiral)

    def forward(self, x):
        return torch.relu(self.conv(self.up(x)))


class MobReconNet(Reconstructor):
    @register_to_config
    def __init__(self, hand_model: str = "builtin", image_size: int = 128, backbone: str = "dense", width: int = 64,
                 pretrained: bool = False, spiral_length: int = 9, levels: int = 4):
        super().__init__()
        self.encoder = make_backbone(backbone, width, pretrained)
        channels = self.encoder.channels
        self.heatmaps = nn.Sequential(nn.Conv2d(channels[1], channels[1], 3, 1, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels[1], 21, 1))
        self.build_decoder(width, spiral_length, levels)

    def build_decoder(self, width: int, spiral_length: int, levels: int, conv=SpiralConv) -> None:
        from pipeline.hand import load_hand_model
        from pipeline.reconstruction.mesh import hand_hierarchy

        hierarchy = hand_hierarchy(load_hand_model(self.config.hand_model), levels)
        spirals = hierarchy.spirals(spiral_length)
        sizes = hierarchy.sizes
        dims = decoder_channels(width, levels)
        local, global_ = self.encoder.channels[1], self.encoder.channels[3]
        self.lift = nn.Parameter(torch.full((sizes[-1], 21), 0.01))
        self.lift_project = nn.Linear(local + global_, dims[0])
        blocks = []
        for step, level in enumerate(range(levels - 1, -1, -1)):  # coarsest -> finest
            out_channels = dims[min(step + 1, levels - 1)]
            blocks.append(SpiralUpBlock(dims[step], out_channels, hierarchy.up[level], spirals[level], conv))
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(dims[-1], 3, spirals[0])

    def decode(self, lifted: torch.Tensor) -> torch.Tensor:
        x = lifted
        for block in self.blocks:
            x = block(x)
        return self.head(x) * UNIT_M

    def forward(self, images: torch.Tensor) -> dict:
        features = self.encoder(images)
        joints_2d = soft_argmax(self.heatmaps(features[1]))
        local = sample_at(features[1], joints_2d)  # [B, 21, C]
        pooled = features[3].mean(dim=(2, 3))[:, None].expand(-1, 21, -1)
        joint_features = self.lift_project(torch.cat([local, pooled], dim=-1))
        lifted = torch.einsum("vj,bjc->bvc", self.lift, joint_features)
        vertices, joints = self.root_relative(self.decode(lifted))
        return {"vertices": vertices, "joints": joints, "joints_2d": joints_2d}
