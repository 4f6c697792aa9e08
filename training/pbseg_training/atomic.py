"""Atomic file output for training reports: the library's temporary-file-and-rename writer, plus
creation of the target folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PediatricBoneSegLib.io.volumes import atomic_path as _library_atomic_path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path (same suffix) that replaces ``path`` when the block succeeds and is
    removed when it fails; the target folder is created first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _library_atomic_path(path) as temporary:
        yield temporary


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)
