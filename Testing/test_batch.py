"""The batch runner (``cli.batch.run_pipelined``): the next case is read while this one computes,
the previous one is written meanwhile, results come in order, a failure stays one case's, and a
Ctrl-C cancels the write in progress and waits for it. The command line's own batches and
interruptions are tested through ``pbseg segment`` in test_cli_segment.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from PediatricBoneSegLib.cli.batch import BACKGROUND_NICE, Done, run_pipelined
from PediatricBoneSegLib.progress import CancelToken, check_cancelled

WAIT_S = 30.0  # a stage waiting for another gives up after this: the overlap did not happen
JOBS = 6


class Stages:
    """Stages that record which thread ran them and wait for each other, as in a real batch."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []
        self.started = {stage: {i: threading.Event() for i in range(JOBS)} for stage in ("read", "write")}
        self.nice: dict[tuple[str, int], int] = {}

    def log(self, stage: str, job: int) -> None:
        self.events.append((stage, job, threading.current_thread().name))
        self.nice[(stage, job)] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def read(self, job: int) -> object:
        self.started["read"][job].set()
        self.log("read", job)
        if job == 2:
            raise OSError("case 2 cannot be read")
        return Done(f"kept {job}") if job == 4 else f"image {job}"

    def compute(self, job: int, data: object) -> str:
        self.log("compute", job)
        # The next case is read, and the previous one written, while this one computes.
        assert job == JOBS - 1 or self.started["read"][job + 1].wait(WAIT_S), "the next case was not read ahead"
        if job > 0 and job - 1 not in (2, 4):
            assert self.started["write"][job - 1].wait(WAIT_S), "the previous case was not being written"
        return f"labels {job}"

    def write(self, job: int, data: object, computed: object, cancel: CancelToken) -> str:
        self.started["write"][job].set()
        self.log("write", job)
        if job == 3:
            raise ValueError("case 3 cannot be written")
        return f"wrote {data} {computed}"


def test_cases_overlap_and_come_back_in_order_with_failures_as_results() -> None:
    stages, results = Stages(), []
    run_pipelined(
        list(range(JOBS)),
        stages.read,
        stages.compute,
        stages.write,
        lambda job, error: f"failed {job}: {error}",
        results.append,
    )
    assert results == [
        "wrote image 0 labels 0",
        "wrote image 1 labels 1",
        "failed 2: case 2 cannot be read",
        "failed 3: case 3 cannot be written",
        "kept 4",
        "wrote image 5 labels 5",
    ]
    main = threading.current_thread().name
    threads = {stage: {name for s, _, name in stages.events if s == stage} for stage in ("read", "compute", "write")}
    assert threads["compute"] == {main}
    assert main not in threads["read"] | threads["write"] and not threads["read"] & threads["write"]
    # Reading ahead and writing behind yield to the computation; the first read and the last
    # write, which the main thread only waits for, do not.
    base = stages.nice[("compute", 0)]
    assert stages.nice[("read", 0)] == base and stages.nice[("write", JOBS - 1)] == base
    assert all(stages.nice[("read", job)] == min(19, base + BACKGROUND_NICE) for job in range(1, JOBS))
    assert all(stages.nice[("write", job)] == min(19, base + BACKGROUND_NICE) for job in (0, 1, 3))


def _interrupted_batch(finish_write: bool) -> tuple[list[str], list[int], list[str]]:
    """Job 0 is being written when job 1's compute gets a real SIGINT. ``finish_write``: job 0's
    write completes first; else it runs until cancelled."""
    results: list[str] = []
    log: list[str] = []
    written = threading.Event()

    def write(job: int, data: object, computed: object, cancel: CancelToken) -> str:
        try:
            while not finish_write:
                check_cancelled(cancel)
                time.sleep(0.005)
            return f"wrote {job}"
        finally:
            log.append(f"write {job} over")
            written.set()

    def compute(job: int, data: object) -> str:
        if job == 1:
            if finish_write:
                assert written.wait(WAIT_S)
            signal.raise_signal(signal.SIGINT)
        return "labels"

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            run_pipelined(
                [0, 1, 2], lambda job: job, compute, write, lambda job, error: f"failed {job}", results.append
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    log.append("raised")
    return results, raised.value.unfinished, log


def test_an_interrupt_cancels_the_write_in_progress_and_waits_for_it() -> None:
    results, unfinished, log = _interrupted_batch(finish_write=False)
    assert results == [] and unfinished == [0, 1]
    assert log == ["write 0 over", "raised"]  # nothing was still writing when the interrupt came out


def test_an_interrupt_reports_the_case_written_meanwhile() -> None:
    results, unfinished, log = _interrupted_batch(finish_write=True)
    assert results == ["wrote 0"] and unfinished == [1]
    assert log == ["write 0 over", "raised"]


def test_start_runs_while_the_first_case_is_read_and_its_error_ends_the_batch() -> None:
    # pbseg segment loads the model (PyTorch: seconds) while its first volume is read.
    reading, events = threading.Event(), []

    def read(job: int) -> str:
        reading.set()
        events.append(f"read {job}")
        return f"image {job}"

    def start() -> None:
        assert reading.wait(WAIT_S), "the first case was not being read while the batch started"
        events.append("start")

    def compute(job: int, data: object) -> str:
        events.append(f"compute {job}")
        return "labels"

    results: list[str] = []
    write = lambda job, data, computed, cancel: f"wrote {job}"  # noqa: E731
    run_pipelined([0, 1], read, compute, write, lambda job, error: "failed", results.append, start=start)
    assert events.index("start") < events.index("compute 0") and results == ["wrote 0", "wrote 1"]

    def refuse() -> None:
        raise LookupError("no model")

    with pytest.raises(LookupError):
        run_pipelined([0, 1], read, compute, write, lambda job, error: "failed", results.append, start=refuse)
    assert results == ["wrote 0", "wrote 1"] and events.count("compute 0") == 1  # nothing computed after it
    started: list[int] = []
    run_pipelined([], read, compute, write, lambda job, error: "", results.append, start=lambda: started.append(0))
    assert started == [0]  # with no case to read, start still runs (the model is still checked)
