"""The one way files and folders are written: complete, or not at all, and never over what another
run wrote.

A file is written to a hidden temporary name beside its target (same extension, so writers pick
the format from it) and renamed over the target only when complete (``atomic_file``,
``write_text``); it gets the umask's permissions like any new file. A folder is built under a
hidden staging name beside its target, then renamed. ``place_folder``
never replaces an existing target, even when another process creates it at the same moment (the
check and the move are one exclusive step). ``replace_folder`` swaps an existing target for the
new folder all or nothing: either the new folder is in place and the old one gone, or the old one
is back and the error says so; Ctrl-C and SIGTERM wait until the swap is over.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .signals import deferred_interrupts


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder is created); it replaces ``path`` when
    the block succeeds and is removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def staging_folder(target: Path, kind: str = "partial") -> Path:
    """A new, empty, hidden folder beside ``target`` (``.<name>.<kind>-<random>``), with the
    umask's permissions (unlike ``mkdtemp``'s private ones: it becomes an ordinary folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"
    staging.mkdir()
    return staging


def place_folder(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; ``FileExistsError`` if ``target`` exists."""
    if os.name == "nt":
        os.rename(staging, target)  # Windows' rename never replaces an existing folder
        return
    # POSIX rename replaces an empty folder: claim the name first with an exclusive mkdir, so that
    # of two runs finishing the same case at once, exactly one succeeds.
    try:
        os.mkdir(target)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
    try:
        os.replace(staging, target)
    except BaseException:
        os.rmdir(target)
        raise


def replace_folder(staging: Path, target: Path) -> None:
    """Swap ``staging`` in for the existing folder ``target`` and delete the old one."""
    retired = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    with deferred_interrupts():
        os.rename(target, retired)
        try:
            place_folder(staging, target)
        except BaseException as error:
            try:
                os.rename(retired, target)
            except OSError:
                raise OSError(
                    f"{target}: another run wrote this folder during the swap; the previous version is kept "
                    f"in {retired}"
                ) from error
            raise
        shutil.rmtree(retired)
