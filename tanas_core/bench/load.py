"""A job on a busy machine (``bench load``): the same zoo job alone and beside N busy processes, with the
thread governor on and off, against its fair share.

The job is ``zoo train`` in a subprocess with a throw-away workspace (a fresh process per case, so no case inherits
another's threads), after one untimed run that brings the data pack into the page cache. A busy process is a
Python loop that never sleeps, one per core as a shared lab machine or a teacher's laptop has them. Fair share: the
job's idle configuration runs one thread per core, so beside N busy processes on C cores C + N threads share C cores,
and the job's fair slowdown is (C + N) / C.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOO = ["zoo", "train", "--suite", "mnist4", "--archs", "vgg16", "--seeds", "1", "--preset", "demo", "--device",
       "cpu"]
GOAL = 1.3  # within this multiple of the fair share


def _timed_zoo(governor: bool) -> float:
    """Wall seconds of the zoo job in a fresh process and workspace."""
    with tempfile.TemporaryDirectory(prefix="tanas-bench-load-") as home:
        env = dict(os.environ, TANAS_FAIR_THREADS="1" if governor else "0")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tanas_core", "--workspace", str(Path(home) / "ws"), *ZOO], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def start_busy(count: int) -> list[subprocess.Popen]:
    """``count`` busy processes (a Python loop each that never sleeps); the caller kills them."""
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass"]) for _ in range(count)]


def stop_busy(processes: list[subprocess.Popen]) -> None:
    """Kill the busy processes and reap them."""
    for process in processes:
        process.kill()
        process.wait()


def fair_share(cores: int, busy: int) -> float:
    """A one-thread-per-core job's fair slowdown beside ``busy`` busy processes on ``cores`` cores."""
    return (cores + busy) / cores


def _case_seconds(count: int, governor: bool) -> float:
    """One timed run of the zoo job beside ``count`` busy processes."""
    spinners = start_busy(count)
    try:
        time.sleep(1.0 if count else 0.0)  # let the busy loops take their cores
        return _timed_zoo(governor)
    finally:
        stop_busy(spinners)


def bench_load(busy: int, repeats: int = 3, on_progress=None) -> dict:
    """``{cores, busy, repeats, rows}``: the zoo job's median seconds over ``repeats`` runs alone and beside ``busy``
    busy processes, governor on and off (the cases taken round-robin, so a drift of the machine reaches all of
    them), with each loaded case's slowdown, fair share and whether it is within ``GOAL`` of it."""
    cores = os.cpu_count() or 1
    cases = [("alone", 0, True), ("alone", 0, False), ("beside busy processes", busy, True),
             ("beside busy processes", busy, False)]
    _timed_zoo(True)  # untimed: the first run reads the data pack from disk, the others from the page cache
    seconds: dict[int, list[float]] = {index: [] for index in range(len(cases))}
    for repeat in range(repeats):
        for index, (case, count, governor) in enumerate(cases):
            if on_progress is not None:
                on_progress(f"run {repeat + 1}/{repeats}: {case}, governor {'on' if governor else 'off'}",
                            (repeat * len(cases) + index) / (repeats * len(cases)))
            seconds[index].append(_case_seconds(count, governor))
    alone = {governor: statistics.median(seconds[index]) for index, (_, count, governor) in enumerate(cases)
             if not count}
    rows = []
    for index, (case, count, governor) in enumerate(cases):
        median = statistics.median(seconds[index])
        slowdown, fair = median / alone[governor], fair_share(cores, count)
        rows.append(dict(case=case, busy_processes=count, governor="on" if governor else "off", seconds=median,
                         runs=", ".join(f"{value:.1f}" for value in seconds[index]), x_alone=slowdown,
                         fair_share_x=fair, x_fair_share=slowdown / fair,
                         within_goal=slowdown / fair <= GOAL if count else None))
    return dict(cores=cores, busy=busy, repeats=repeats, rows=rows)
