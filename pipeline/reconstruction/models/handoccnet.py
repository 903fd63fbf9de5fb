"""HandOccNet-style reconstructor: a feature pyramid, hand/occluder attention, a MANO regressor.

The encoder's strides 8-32 are fused top-down into one stride-8 map (FPN). A spatial gate
splits it into the hand's features and the occluder's (a learned soft mask and its
complement, HandOccNet's SpatialGate); a Feature Injecting Transformer lets the hand's
tokens attend to the occluder's (FIT), a Self-Enhancing Transformer refines them (SET). A
heatmap head gives the 2D joints; the features sampled at them and the pooled map regress
16 joint rotations (6D) and 10 betas, which the differentiable hand model turns into the
mesh (no translation: root-relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from pipeline.reconstruction.backbones import make_backbone
from pipeline.reconstruction.layers import AttentionBlock, rotation_6d_to_matrix, sample_at, soft_argmax
from pipeline.reconstruction.models.base import Reconstructor


class HandOccNet(Reconstructor):
    has_mano = True

    @register_to_config
    def __init__(self, hand_model: str = "builtin", image_size: int = 256, backbone: str = "dense", width: int = 64,
                 pretrained: bool = False, depth: int = 2, heads: int = 4):
        super().__init__()
        self.encoder = make_backbone(backbone, width, pretrained)
        channels, dim = self.encoder.channels, 2 * width
        self.lateral = nn.ModuleList([nn.Conv2d(c, dim, 1) for c in channels[1:]])
        self.smooth = nn.Conv2d(dim, dim, 3, 1, 1)
        self.gate = nn.Conv2d(dim, 1, 3, 1, 1)
        self.fit = nn.ModuleList([AttentionBlock(dim, heads) for _ in range(depth)])
        self.set = nn.ModuleList([AttentionBlock(dim, heads) for _ in range(depth)])
        self.heatmaps = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(dim, 21, 1))
        self.regressor = nn.Sequential(nn.Linear(22 * dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, 16 * 6 + 10))
        nn.init.zeros_(self.regressor[-1].weight)
        with torch.no_grad():  # start at the flat hand, facing the camera, with the mean shape
            self.regressor[-1].bias.copy_(torch.cat([torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(16), torch.zeros(10)]))

    def pyramid(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = self.lateral[-1](features[3])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[1:3])):
            top = lateral(feature) + F.interpolate(top, size=feature.shape[-2:], mode="nearest")
        return self.smooth(top)

    def forward(self, images: torch.Tensor) -> dict:
        fused = self.pyramid(self.encoder(images))
        mask = torch.sigmoid(self.gate(fused))
        batch, dim, height, width = fused.shape
        hand = (fused * mask).flatten(2).transpose(1, 2)
        occluder = (fused * (1 - mask)).flatten(2).transpose(1, 2)
        for block in self.fit:
            hand = block(hand, occluder)
        for block in self.set:
            hand = block(hand)
        hand_map = hand.transpose(1, 2).reshape(batch, dim, height, width)
        joints_2d = soft_argmax(self.heatmaps(hand_map))
        sampled = sample_at(hand_map, joints_2d)
        parameters = self.regressor(torch.cat([sampled, hand_map.mean(dim=(2, 3))[:, None]], dim=1).flatten(1))
        rotations = rotation_6d_to_matrix(parameters[:, :96].reshape(batch, 16, 6))
        betas = parameters[:, 96:]
        vertices, joints = self.hand(rotations).forward_rotations(rotations, betas)
        root = joints[:, :1]
        return {"vertices": vertices - root, "joints": joints - root, "joints_2d": joints_2d, "rotations": rotations,
                "betas": betas}
