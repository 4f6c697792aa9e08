"""Splitting a cohort over the jobs of a scheduler: ``--shard I/N`` gives job I (0-based, as
``$SLURM_ARRAY_TASK_ID`` of ``--array=0-(N-1)``) every N-th case of the sorted case list, so that N
jobs that see the same inputs cover every case exactly once, whatever order the inputs were found
in. Light: no PyTorch, no image library."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """Job ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: needs 0 <= I < N (I counts from 0)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[Item], key: Callable[[Item], str]) -> list[Item]:
        """This job's items: every ``count``-th of ``items`` sorted by ``key`` (ties keep their
        order), starting at ``index``."""
        return sorted(items, key=key)[self.index :: self.count]


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> ``Shard(I, N)``; an argparse ``type``: a bad value is one usage error."""
    try:
        index, count = (int(part) for part in text.split("/"))
        return Shard(index, count)
    except ValueError as error:
        detail = str(error) if str(error).startswith("shard") else "expected I/N, e.g. 0/4"
        raise argparse.ArgumentTypeError(f"invalid shard {text!r}: {detail}") from None
