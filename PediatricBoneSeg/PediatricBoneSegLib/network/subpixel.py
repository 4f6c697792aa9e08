"""Inference form of a BN-folded decoder block that never builds the upsampled tensor.

A decoder block computes ``conv3x3(cat(up2(x), skip))`` with nearest ×2 upsampling. Split the
kernel into its ``x`` and ``skip`` input channels: the ``skip`` part stays a 3x3 convolution at full
resolution, but each output pixel of the ``x`` part, depending on its phase (row and column parity),
sees only a 2x2 neighbourhood of ``x`` at its own resolution, with the 3x3 taps summed accordingly.
So the ``x`` part becomes four 2x2 convolutions of ``x`` (one per phase, each over the window of
the padded ``x`` that phase needs), interleaved into the output: 16/36 of the multiply-adds on
``x``'s channels (the widest input of every block), and neither the upsampled nor the concatenated
tensor is materialized.
Exact up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import DecoderBlock

# _PHASE_TAPS[a][p, r]: 3x3 kernel row r (offsets -1, 0, +1 on the upsampled grid) feeds low-res
# tap p (rows i-1, i for output row 2i; rows i, i+1 for output row 2i+1).
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


class SubpixelDecoderBlock(nn.Module):
    """Same ``forward(x, skip)`` as a BN-folded ``DecoderBlock`` (``bn1``/``bn2`` identities, biased
    ``conv1``/``conv2``): x [N, Cx, h, w], skip [N, Cs, 2h, 2w] or None → [N, out, 2h, 2w]."""

    def __init__(self, block: DecoderBlock) -> None:
        super().__init__()
        if not isinstance(block.bn1, nn.Identity) or block.conv1.bias is None:
            raise ValueError("the decoder block must have its BatchNorm folded into conv1 first")
        weight = block.conv1.weight.detach()
        up_channels = weight.shape[1] - block.skip_channels
        self.out_channels = weight.shape[0]
        taps = _PHASE_TAPS.to(weight)
        # [2, 2, out, in, 2, 2]: the 2x2 kernel of each phase (a, b)
        phase_kernels = torch.einsum("apr,bqs,ocrs->abocpq", taps, taps, weight[:, :up_channels])
        self.phase_weights = nn.ParameterList(nn.Parameter(phase_kernels[a, b].clone()) for a, b in _PHASES)
        skip_weight = weight[:, up_channels:]
        self.skip_weight = nn.Parameter(skip_weight.clone()) if skip_weight.shape[1] else None
        self.bias = nn.Parameter(block.conv1.bias.detach().clone())
        self.conv2, self.bn2, self.relu = block.conv2, block.bn2, block.relu

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        height, width = x.shape[2:]
        padded = F.pad(x, (1, 1, 1, 1))
        # phase (row, column) reads x rows i-1+row, i+row: rows i+row, i+row+1 of the padded x
        phases = [
            F.conv2d(padded[:, :, row : row + height + 1, column : column + width + 1], weight)
            for (row, column), weight in zip(_PHASES, self.phase_weights)
        ]
        if self.skip_weight is not None:
            out = F.conv2d(skip, self.skip_weight, self.bias, padding=1)
        else:
            last = phases[0].is_contiguous(memory_format=torch.channels_last)
            bias = self.bias.to(phases[0].dtype).view(1, -1, 1, 1).expand(len(x), -1, 2 * height, 2 * width)
            out = bias.contiguous(memory_format=torch.channels_last if last else torch.contiguous_format)
        for (row, column), phase in zip(_PHASES, phases):
            out[:, :, row::2, column::2] += phase
        out = self.relu(out)
        return self.relu(self.bn2(self.conv2(out)))


def use_subpixel_decoder(network: nn.Module) -> int:
    """Replace every BN-folded ``DecoderBlock`` of ``network`` (a MultiDomainUNet) in place; returns
    how many were replaced."""
    blocks = network.decoder.blocks
    replaced = 0
    for index, block in enumerate(blocks):
        if isinstance(block, DecoderBlock):
            blocks[index] = SubpixelDecoderBlock(block)
            replaced += 1
    return replaced
