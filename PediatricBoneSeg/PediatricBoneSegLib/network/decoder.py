"""U-Net decoder with skip connections and domain-specific BatchNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import NormFactory


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the skip (if any), two 3x3 conv + norm + ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, norm: NormFactory) -> None:
        super().__init__()
        self.skip_channels = skip_ch
        self.conv1 = nn.Conv2d(in_ch + skip_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = norm(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class UNetDecoder(nn.Module):
    """Encoder features at strides 2..32 → list of the five decoder stage outputs at strides
    16, 8, 4, 2, 1 (stage 1 = deepest) with ``channels`` channels."""

    def __init__(self, encoder_channels: tuple[int, ...], channels: tuple[int, ...], norm: NormFactory) -> None:
        super().__init__()
        skips = (*encoder_channels[-2::-1], 0)  # strides 16, 8, 4, 2, then none at full resolution
        in_chs = (encoder_channels[-1], *channels[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(in_ch, skip_ch, out_ch, norm) for in_ch, skip_ch, out_ch in zip(in_chs, skips, channels)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        skips: list[torch.Tensor | None] = [*features[-2::-1], None]
        x = features[-1]
        stages = []
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
            stages.append(x)
        return stages
