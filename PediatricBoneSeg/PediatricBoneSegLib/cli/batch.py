"""A batch of cases in three overlapping stages: a reader thread reads the next case while the
main thread computes the current one, and a writer thread writes the previous case's files.

The main thread computes: PyTorch runs its own threads from it, the model and its prepared network
stay loaded for the whole batch, and Python delivers Ctrl-C and SIGTERM to it. One case is read
ahead and one written behind, so at most three cases are in memory. Results come back in the
order of the jobs. Reading ahead and writing behind run at a lower priority, so that they take the
CPU the computation leaves free.

Interrupted (a ``KeyboardInterrupt`` in the main thread): the write in progress is cancelled
through its ``CancelToken`` and waited for (``io.outputs.write_case`` removes its own staging
folder, or finishes the move it had begun), with further signals held back meanwhile; the read
ahead is abandoned (reading writes nothing). The results of writes that did complete are reported,
then the interrupt is raised again with ``unfinished``: the jobs that were not written, in order.
The results are reported on the main thread too, inside the batch: an interrupt while one is
reported is handled like any other.
No thread of the batch writes anything once the interrupt is raised.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..progress import Cancelled, CancelToken
from ..signals import deferred_interrupts

BACKGROUND_NICE = 10  # of the reader and writer threads: the computation comes first
Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class Done(Generic[Result]):
    """What ``read`` returns for a job that needs no computing or writing (a case kept as it was):
    ``result`` is its result."""

    result: Result


@dataclass
class _InFlight(Generic[Job, Result]):
    """A job whose result is being produced: by the writer (``future``) or already known."""

    job: Job
    future: Future | None = None
    cancel: CancelToken | None = None
    result: Any = None


def run_pipelined(
    jobs: Sequence[Job],
    read: Callable[[Job], Any],
    compute: Callable[[Job, Any], Any],
    write: Callable[[Job, Any, Any, CancelToken], Result],
    fail: Callable[[Job, Exception], Result],
    report: Callable[[Result], None],
    start: Callable[[], None] | None = None,
) -> None:
    """Run every job: ``read(job)`` on the reader thread (returns the case's data, or ``Done``),
    ``compute(job, data)`` on this thread, ``write(job, data, computed, cancel)`` on the writer
    thread (checking ``cancel``), and ``report`` each job's result on this thread, in order: what
    ``write`` returned, or ``fail(job, error)`` for an ``Exception`` of any stage (the batch goes on).
    ``start()`` runs on this thread while the first job is read, before anything is computed (it
    loads what computing needs: the model); an exception of it ends the batch and is raised."""
    # Reading or writing while a case computes runs in the background (lower priority); the first
    # read and the last write, which the main thread only waits for, at full priority.
    first_reader, reader = _pool("pbseg-read", False), _pool("pbseg-read-ahead", True)
    last_writer, writer = _pool("pbseg-write-last", False), _pool("pbseg-write", True)
    reads: dict[int, Future] = {}
    flights: list[_InFlight] = []  # started, not yet reported: the one being written and the next
    current: list[Job] = []  # the job being read or computed
    try:
        if start is not None and not jobs:
            start()
        for index, job in enumerate(jobs):
            current[:] = [job]
            with deferred_interrupts():  # a pool's thread that starts as a signal arrives must be registered
                if index == 0:
                    reads[0] = first_reader.submit(read, job)
                if index + 1 < len(jobs):
                    reads[index + 1] = reader.submit(read, jobs[index + 1])
            if index == 0 and start is not None:
                start()
            pool = writer if index + 1 < len(jobs) else last_writer
            _start(job, reads.pop(index), compute, write, fail, pool, flights, current)
            while len(flights) > 1:  # the previous job's write ran while this one computed
                _report_first(flights, fail, report)
        while flights:
            _report_first(flights, fail, report)
    except KeyboardInterrupt as interruption:
        with deferred_interrupts():  # nothing may go on writing once the interrupt is raised
            for flight in flights:
                if flight.cancel is not None:
                    flight.cancel.cancel()
            for pool in (writer, last_writer):
                pool.shutdown(wait=True, cancel_futures=True)
            unfinished = []
            for flight in flights:
                if _written(flight):
                    report(_finish(flight, fail))
                else:
                    unfinished.append(flight.job)
        interruption.unfinished = unfinished + current  # type: ignore[attr-defined]
        raise
    finally:
        for pool in (writer, last_writer):
            pool.shutdown(wait=True)
        for pool in (first_reader, reader):
            pool.shutdown(wait=False, cancel_futures=True)


def _pool(name: str, background: bool) -> ThreadPoolExecutor:
    """One worker thread, at a lower priority when ``background``."""
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix=name, initializer=_yield_to_compute if background else None
    )


def _yield_to_compute() -> None:
    """Lower this thread's scheduling priority (Linux: threads have their own nice value): reading
    and writing fill the CPU the computation leaves free instead of taking a core from PyTorch,
    whose threads wait for each other (``host.available_threads`` counts niced time as free)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def _report_first(
    flights: list[_InFlight], fail: Callable[[Job, Exception], Result], report: Callable[[Result], None]
) -> None:
    """Wait (interruptibly) for the first job's write, then report it and drop it, together."""
    if flights[0].future is not None:
        wait([flights[0].future])
    with deferred_interrupts():
        report(_finish(flights.pop(0), fail))


def _start(
    job: Job,
    pending_read: Future,
    compute: Callable[[Job, Any], Any],
    write: Callable[[Job, Any, Any, CancelToken], Result],
    fail: Callable[[Job, Exception], Result],
    writer: ThreadPoolExecutor,
    flights: list[_InFlight],
    current: list[Job],
) -> None:
    """Wait for ``job``'s data, compute it here and hand it to the writer: the job moves from
    ``current`` to ``flights`` at once, with its write submitted or its result known."""
    try:
        data = pending_read.result()
        flight = _InFlight(job, result=data.result) if isinstance(data, Done) else None
        computed = None if flight is not None else compute(job, data)
    except Exception as error:  # one bad case must not stop the batch
        flight = _InFlight(job, result=fail(job, error))
    with deferred_interrupts():
        if flight is None:
            cancel = CancelToken()
            flight = _InFlight(job, writer.submit(write, job, data, computed, cancel), cancel)
        flights.append(flight)
        current.clear()


def _finish(flight: _InFlight, fail: Callable[[Job, Exception], Result]) -> Result:
    """The job's result, once its write (if any) is over."""
    if flight.future is None:
        return flight.result
    try:
        return flight.future.result()
    except Exception as error:
        return fail(flight.job, error)


def _written(flight: _InFlight) -> bool:
    """The job's result exists and is not a cancelled write (after the writer has stopped)."""
    if flight.future is None:
        return True
    return (
        flight.future.done()
        and not flight.future.cancelled()
        and not isinstance(flight.future.exception(), (Cancelled, KeyboardInterrupt))
    )
