"""Domain-specific batch normalization: shared convolutions, one BN set per domain.

Every ``DomainBatchNorm2d`` of a network reads the routing of the current forward pass from one
shared ``DomainRouting`` object, so a batch that stacks mini-batches of several domains is
normalized with each domain's own statistics and affine parameters in a single forward pass
(one forward / one backward per step, which DistributedDataParallel requires).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DomainRouting:
    """Which samples of the current batch belong to which BN set: contiguous runs
    ``(norm_set, start, stop)``. Set by the network at the start of each forward pass."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int, int]] = [(0, 0, 0)]

    def route(self, norm_sets: Sequence[int], batch_size: int) -> None:
        runs: list[tuple[int, int, int]] = []
        for index, norm_set in enumerate(norm_sets):
            if runs and runs[-1][0] == norm_set:
                runs[-1] = (norm_set, runs[-1][1], index + 1)
            else:
                if any(run[0] == norm_set for run in runs):
                    raise ValueError("samples of one domain must be contiguous in the batch")
                runs.append((norm_set, index, index + 1))
        if not runs or runs[-1][2] != batch_size:
            raise ValueError(f"{len(norm_sets)} domain indices for a batch of {batch_size}")
        self.runs = runs


class DomainBatchNorm2d(nn.Module):
    """``num_sets`` BatchNorm2d layers; each sample is normalized by its domain's set.

    Input and output: [B, C, H, W].
    """

    def __init__(self, num_features: int, num_sets: int, routing: DomainRouting) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_sets))
        self._routing = routing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runs = self._routing.runs
        if len(runs) == 1:
            return self.norms[runs[0][0]](x)
        return torch.cat([self.norms[norm_set](x[start:stop]) for norm_set, start, stop in runs])
