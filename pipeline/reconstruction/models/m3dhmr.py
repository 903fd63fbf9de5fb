"""M3DHMR-style reconstructor: MobRecon's pipeline with M3DHMR's decoder.

The encoder, 2D-joint heatmaps and lifting are MobRecon's (``models.mobrecon``); the decoder's
spiral convolutions become dynamic spiral convolutions (``kernels`` spiral kernels mixed per
vertex by weights computed from the vertex's features, K = 8 in the paper), and a final
region-of-interest layer refines the coordinates: a dilated spiral convolution over the last
features and the coarse coordinates, restricted to each vertex's region (the palm or one of the
five fingers, from the hand model's skinning: ``vertex_parts``), added as a residual.
"""

from __future__ import annotations

import functools

import torch
from diffusers.configuration_utils import register_to_config

from pipeline.reconstruction.layers import DynamicSpiralConv, RegionSpiralConv
from pipeline.reconstruction.models.mobrecon import UNIT_M, MobReconNet, decoder_channels

ROI_DILATION = 2


class M3DHMRNet(MobReconNet):
    @register_to_config
    def __init__(self, hand_model: str = "builtin", image_size: int = 128, backbone: str = "dense", width: int = 64,
                 pretrained: bool = False, spiral_length: int = 9, levels: int = 4, kernels: int = 8):
        super().__init__(hand_model, image_size, backbone, width, pretrained, spiral_length, levels)

    def build_decoder(self, width: int, spiral_length: int, levels: int, conv=None) -> None:
        from pipeline.hand import load_hand_model
        from pipeline.reconstruction.mesh import hand_hierarchy

        conv = functools.partial(DynamicSpiralConv, kernels=self.config.kernels)
        super().build_decoder(width, spiral_length, levels, conv)
        hand = load_hand_model(self.config.hand_model)
        spiral = hand_hierarchy(hand, levels).spirals(spiral_length, dilation=ROI_DILATION)[0]
        self.roi = RegionSpiralConv(decoder_channels(width, levels)[-1] + 3, 3, spiral, hand.vertex_parts)
        torch.nn.init.zeros_(self.roi.linear.weight)  # starts as MobRecon's output: the refinement is learned
        torch.nn.init.zeros_(self.roi.linear.bias)

    def decode(self, lifted: torch.Tensor) -> torch.Tensor:
        x = lifted
        for block in self.blocks:
            x = block(x)
        coarse = self.head(x)
        return (coarse + self.roi(torch.cat([x, coarse], dim=-1))) * UNIT_M
