"""The one atomic writer: a file is complete or absent, never half written; permissions follow the
umask like any new file (not a temporary file's private ones)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from PediatricBoneSegLib.atomic import atomic_file, write_text


def test_a_failed_write_leaves_nothing_and_a_finished_one_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_file(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.endswith(".nii.gz")
        temporary.write_bytes(b"partial")
        raise RuntimeError("crash while writing")
    assert list(target.parent.iterdir()) == []
    target.write_bytes(b"old")
    with atomic_file(target) as temporary:
        temporary.write_bytes(b"complete")
        assert target.read_bytes() == b"old"  # readers see the old file until the end
    assert target.read_bytes() == b"complete" and list(target.parent.iterdir()) == [target]


def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.json", "{}\n")
    finally:
        os.umask(previous)
    assert path.read_text(encoding="utf-8") == "{}\n" and path.stat().st_mode & 0o777 == 0o644
