"""Projection heads for the multi-scale contrastive regularization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """[B, C, H, W] → global average pool → Linear-ReLU-Linear → L2-normalized [B, dim]."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        hidden = max(dim, min(in_ch, 512))
        self.mlp = nn.Sequential(nn.Linear(in_ch, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x.mean(dim=(2, 3))), dim=1)
