"""Torch threads that fit what the machine can give now.

On a CPU, torch's OpenMP threads spin while they wait for each other: when other processes hold the cores, a
job with one thread per core waits for threads that are not running, and runs several times slower than its fair
share (``bench load``). ``ThreadGovernor.adapt`` (called by ``RunContext.check`` between steps, at most once a
second) measures, from the kernel's CPU counters, how many cores other processes used since its last look, and
sets torch's thread count to the cores left, between 1 and the process's own setting. Linux only (``/proc``);
elsewhere, or with ``TANAS_FAIR_THREADS=0``, it leaves the threads as they are.

CPU float reductions depend on the thread count, so with the governor on two runs of one request on a machine whose
load changes can differ in the last bits; ``TANAS_FAIR_THREADS=0`` pins the threads where results must be
bit-identical (the test suite does).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import torch

_CEILING: int | None = None  # the process's own thread count, taken when its first governor is made
_LOCK = threading.Lock()


class CpuSample(NamedTuple):
    """Kernel counters in clock ticks: every CPU's total and idle time (``/proc/stat``), this process's CPU time
    (``/proc/self/stat``: user + system, all threads)."""

    total: int
    idle: int
    own: int


def read_sample(root: Path = Path("/proc")) -> CpuSample | None:
    """The counters now, or ``None`` where ``/proc`` does not have them."""
    try:
        fields = (root / "stat").read_text().splitlines()[0].split()
        own = (root / "self" / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return CpuSample(total=sum(ticks), idle=ticks[3] + ticks[4], own=int(own[11]) + int(own[12]))


def fair_threads(before: CpuSample, after: CpuSample, cpus: int, ceiling: int) -> int:
    """Threads for this process from two samples: the cores others kept busy between them (all busy cores minus
    this process's own share) taken from ``cpus``, rounded, between 1 and ``ceiling``."""
    total = after.total - before.total
    if total <= 0:
        return ceiling
    per_core = total / cpus  # ticks one core counted over the span
    busy_cores = (total - (after.idle - before.idle)) / per_core
    others = max(0.0, busy_cores - (after.own - before.own) / per_core)
    return max(1, min(ceiling, int(cpus - others + 0.5)))


class ThreadGovernor:
    """Keeps torch's thread count at what the machine can give (``adapt``); one per run, sharing the process's
    ceiling (its thread count before any governor changed it)."""

    def __init__(self, interval: float = 1.0, cpus: int | None = None):
        global _CEILING
        with _LOCK:
            if _CEILING is None:
                _CEILING = torch.get_num_threads()
        self.interval, self.cpus = interval, cpus or os.cpu_count() or 1
        self._last: tuple[float, CpuSample] | None = None

    @property
    def ceiling(self) -> int:
        return min(_CEILING or 1, self.cpus)

    def adapt(self) -> int | None:
        """Look at the counters (at most once per ``interval`` seconds) and set torch's threads; returns the count
        set, or ``None`` when it did not look or cannot."""
        now = time.monotonic()
        if self.ceiling <= 1 or os.environ.get("TANAS_FAIR_THREADS") == "0" or (
                self._last is not None and now - self._last[0] < self.interval):
            return None
        sample = read_sample()
        if sample is None:
            return None
        previous, self._last = self._last, (now, sample)
        if previous is None:
            return None
        threads = fair_threads(previous[1], sample, self.cpus, self.ceiling)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads
