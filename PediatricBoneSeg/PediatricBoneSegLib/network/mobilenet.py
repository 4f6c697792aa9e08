"""MobileNetV2 encoder whose parameter names match torchvision's ``mobilenet_v2().features``.

Light enough to train on a CPU; its ImageNet weights map directly (``features.<i>...``), with every
BatchNorm domain-specific (``features.0.1.norms.<d>.weight`` stands for ``features.0.1.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from .resnet import NormFactory

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# Index in ``features`` whose output is the skip connection at strides 2, 4, 8, 16, 32.
_TAPS = (1, 3, 6, 13, 18)


class ConvNormReLU6(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int, norm: NormFactory):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            norm(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int, norm: NormFactory) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvNormReLU6(in_ch, hidden, 1, 1, 1, norm))
        layers += [
            ConvNormReLU6(hidden, hidden, 3, stride, hidden, norm),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            norm(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2Encoder(nn.Module):
    """Input [B, in_channels, H, W] (H, W multiples of 32) → five feature maps at strides
    2, 4, 8, 16, 32 with ``self.channels`` = (16, 24, 32, 96, 1280) channels."""

    def __init__(self, in_channels: int, norm: NormFactory) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvNormReLU6(in_channels, 32, 3, 2, 1, norm)]
        in_ch = 32
        for expansion, out_ch, repeats, stride in _SETTINGS:
            for index in range(repeats):
                features.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expansion, norm))
                in_ch = out_ch
        features.append(ConvNormReLU6(in_ch, 1280, 1, 1, 1, norm))
        self.features = nn.Sequential(*features)
        self.channels = (16, 24, 32, 96, 1280)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                taps.append(x)
        return taps


# The original MobileNetV2 reference implementation (and weights derived from it) numbers each
# block's layers flat (conv, bn, relu6, conv, bn, relu6, conv, bn); torchvision nests them.
_FLAT_TO_NESTED = {
    "expanded": {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"},
    "depthwise_first": {"0": "0.0", "1": "0.1", "3": "1", "4": "2"},
}


def torchvision_key(key: str) -> str:
    """Rename a flat-layout MobileNetV2 key (``features.2.conv.3.weight``) to torchvision's
    (``features.2.conv.1.0.weight``); other keys are returned unchanged."""
    parts = key.split(".")
    if len(parts) != 5 or parts[0] != "features" or parts[2] != "conv":
        return key
    table = _FLAT_TO_NESTED["depthwise_first" if parts[1] == "1" else "expanded"]
    return ".".join([*parts[:3], table.get(parts[3], parts[3]), parts[4]])
