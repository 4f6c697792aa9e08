"""Ctrl-C and SIGTERM for the command lines and for the critical sections of writing outputs.

A batch system (SLURM, Kubernetes, ``kill``) stops a job with SIGTERM; by default Python dies at
once, with no chance to clean up. ``interrupts_as_exceptions`` turns SIGTERM into ``Terminated``
(a ``KeyboardInterrupt``), so the same clean-up as for Ctrl-C runs, and ``exit_code`` gives the
shell's convention (128 + signal number). ``deferred_interrupts`` holds both signals back during a
few renames that must happen all together (replacing a case folder), then delivers them.

Python delivers signals to the main thread only: off the main thread these helpers do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the work in progress is cleaned up."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def exit_code(interruption: KeyboardInterrupt) -> int:
    """128 + the signal number: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(interruption, Terminated) else signal.SIGINT)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """While active, SIGTERM raises ``Terminated`` (Ctrl-C raises ``KeyboardInterrupt`` as usual)."""
    if not _on_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block without interruption by SIGINT or SIGTERM; a signal received meanwhile is
    delivered, to the handler that was in force, as soon as the block ends."""
    if not _on_main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.getsignal(number) for number in _HANDLED}

    def remember(signum: int, frame: object) -> None:
        received.append(signum)

    # An ignored signal stays ignored; a handler installed outside Python (None) is left alone.
    replaced = [number for number, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    for number in replaced:
        signal.signal(number, remember)
    try:
        yield
    finally:
        for number in replaced:
            signal.signal(number, previous[number])
        for number in dict.fromkeys(received):
            signal.raise_signal(number)
