"""Facts about the machine this process runs on, without PyTorch: CPU features, physical cores,
free CPUs and free memory (Linux /proc and /sys, with safe answers elsewhere). The inference fast
path and the surface builder size their threads and batches with them."""

from __future__ import annotations

import os
import time
from pathlib import Path

NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes bf16 matrix products in hardware (AVX-512-BF16 or AMX).
    ``flags``: CPU feature flags as /proc/cpuinfo names them (default: this CPU's)."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_CPU_FLAGS)


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads share a core's FPUs,
    so more threads than cores slows convolutions down)."""
    cores = set()
    for cpu in _allowed_cpus():
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text().strip() + ":" + (topology / "core_id").read_text())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def idle_cpus(window_s: float = 0.03) -> float | None:
    """How many of this process's CPUs were free over the next ``window_s`` seconds (idle time,
    plus time given to lower-priority niced processes, which yield to this one); None where
    /proc/stat does not exist."""
    cpus = _allowed_cpus()
    first = _cpu_times(cpus)
    time.sleep(window_s)
    second = _cpu_times(cpus)
    if not first or first.keys() != second.keys():
        return None
    own_nice = os.nice(0) if hasattr(os, "nice") else 0
    free = 0.0
    for cpu, before in first.items():
        delta = [b - a for a, b in zip(before, second[cpu])]
        total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
        if total > 0:
            free += (delta[3] + delta[4] + (delta[1] if own_nice <= 0 else 0)) / total
    return free


def _allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _cpu_times(cpus: list[int]) -> dict[int, list[int]]:
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    wanted = {f"cpu{cpu}": cpu for cpu in cpus}
    times = {}
    for line in lines:
        name, _, values = line.partition(" ")
        if name in wanted:
            times[wanted[name]] = [int(value) for value in values.split()]
    return times


def available_threads() -> int:
    """Threads for the network stage: one per physical core, but no more than the CPUs free right
    now. Measured on the 2-core CI machine: with one core busy, two threads ran a MobileNet U-Net
    17x slower than one (every convolution waits for the descheduled thread)."""
    cores = physical_cores()
    free = idle_cpus() if cores > 1 else None
    return cores if free is None else max(1, min(cores, round(free)))


def available_memory() -> int:
    """Bytes of system memory free for this process: the available memory within the cgroup limit
    (Linux); 4 GiB when unknown."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = int(limit) - int((cgroup / "memory.current").read_text())
            available = free if available is None else min(available, free)
    except (OSError, ValueError):
        pass
    return available if available is not None else 4 << 30
