"""Progress reporting and cancellation shared by the pipeline, the CLI and the Slicer module.

A ``ProgressCallback`` receives (fraction in [0, 1], message). A ``CancelToken`` is checked between
stages and slice batches; a cancelled run raises ``Cancelled`` and leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):  # noqa: N818 (public name: a cancel is no error)
    """The user cancelled the run; nothing was written or changed."""


class CancelToken:
    """A thread-safe cancel flag: the GUI thread calls ``cancel()``, the worker polls it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def check_cancelled(cancel: CancelToken | None) -> None:
    """``cancel.raise_if_cancelled()`` for an optional token."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def sub_progress(progress: ProgressCallback | None, start: float, stop: float) -> ProgressCallback:
    """A callback for a sub-task that maps its [0, 1] onto [start, stop] of ``progress``."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return report
