"""Start-up of a command that segments: its heavy imports, made cheaper for the garbage collector.

Importing PyTorch, VTK and matplotlib creates hundreds of thousands of objects (modules, classes,
functions) that live until the process ends. Python's cyclic garbage collector runs as objects
accumulate and traverses all of them again at every full collection: about 0.4 s during the
imports on this project's 2-core machines, and 0.5 s more in the collection at exit.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Import inside this block without the collector, then move every object alive at its end
    into the collector's permanent generation (``gc.freeze``: never traversed again, at exit
    neither). Use it before any case is processed, so that only start-up objects are frozen: an
    object frozen is never collected, even once it is garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
