"""How the benchmarks measure: peak memory of a call, medians of interleaved repeats, speed-up ratios."""
from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch


def rss_bytes() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(function: Callable[[], object]) -> float:
    """Peak extra memory of one run of ``function`` in MiB, after a warm-up run.

    CPU: the resident set size sampled every millisecond, minus its size before the run (approximate: PyTorch's
    allocator keeps and reuses memory). CUDA: ``torch.cuda.max_memory_allocated`` above the starting allocation.
    """
    function()  # warm-up: allocator, kernels, lazy initialisation
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        function()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - base) / 2 ** 20
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        function()
    finally:
        stop.set()
        sampler.join()
    return max(0, peak[0] - base) / 2 ** 20


def interleaved_medians(cases: list[tuple[str, Callable[[], object], int]]) -> dict[str, float]:
    """Median seconds per case, timing the cases round-robin (one run of each per round, ``runs`` rounds for a
    case) so that a slow spell of a noisy machine lands on every case rather than on one."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for round_index in range(max(runs for _, _, runs in cases)):
        for name, function, runs in cases:
            if round_index >= runs:
                continue
            started = time.perf_counter()
            function()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def speedup_row(medians: dict[str, float]) -> dict[str, float]:
    """``{previous_s, current_s, speedup}`` from the medians of the ``previous`` and ``current`` cases."""
    return dict(previous_s=medians["previous"], current_s=medians["current"],
                speedup=medians["previous"] / medians["current"])
