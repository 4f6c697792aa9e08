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


def contiguous_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """``labels`` grouped into contiguous runs ``(label, length)``, in order.

    Raises ValueError when one label appears in two separate runs."""
    runs: list[tuple[int, int]] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        elif any(run[0] == label for run in runs):
            raise ValueError("samples of one domain must be contiguous in the batch")
        else:
            runs.append((label, 1))
    return runs


class DomainRouting:
    """Which samples of the current batch belong to which BN set: contiguous runs
    ``(norm_set, length)`` in batch order. Set by the network at the start of each forward pass."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int]] = [(0, 0)]

    def route(self, norm_sets: Sequence[int], batch_size: int) -> None:
        runs = contiguous_runs(norm_sets)
        if len(norm_sets) != batch_size or not runs:
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
        # split, not one slice per run: the backward of split is one concatenation, where slices
        # each scatter into a zero-filled full-batch gradient (17 % of an MTMD training step)
        chunks = x.split([length for _, length in runs])
        return torch.cat([self.norms[norm_set](chunk) for (norm_set, _), chunk in zip(runs, chunks)])
