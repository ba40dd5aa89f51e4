"""A job on a busy machine (``bench load``): the same job alone and beside N busy processes, against its fair share.

Two jobs. ``zoo``: ``zoo train`` with the thread governor on, off, and off with a short OpenMP spin. ``tests``: a
selection of the test suite (which pins torch's threads, the governor off) with libgomp's default spin and with the
short spin ``tests/conftest.py`` sets. Each run is a fresh subprocess with a throw-away workspace (no case inherits
another's threads), after one untimed run that brings the data pack into the page cache. A busy process is a Python
loop that never sleeps, one per core as a shared lab machine or a teacher's laptop has them. Fair share: the job's
idle configuration runs one thread per core, so beside N busy processes on C cores C + N threads share C cores, and
the job's fair slowdown is (C + N) / C.

Why the spin matters: torch's OpenMP threads wait for each other at the end of every parallel region. libgomp spins
``GOMP_SPINCOUNT`` iterations (300,000 by default) before it sleeps, so a thread whose partner was descheduled by a
busy process burns the time slice the partner needs. A short spin keeps the idle speed (consecutive operators start
within it) and sleeps soon when the partner is away.
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
TESTS = ["tests/test_seam.py", "-k", "repeated_comparison or demo_ends or progress_is_monotone"]
GOAL = 1.3  # within this multiple of the fair share
LIBGOMP_DEFAULT_SPIN = "300000"  # libgomp's own default (set explicitly, so a parent's setting cannot leak in)
SHORT_SPIN = "10000"  # the test suite's setting (tests/conftest.py)

# (governor, spin) per case of each job; the test suite pins its threads, so its cases differ in the spin only.
SETTINGS = {"zoo": [("on", LIBGOMP_DEFAULT_SPIN), ("off", LIBGOMP_DEFAULT_SPIN), ("off", SHORT_SPIN)],
            "tests": [("off", LIBGOMP_DEFAULT_SPIN), ("off", SHORT_SPIN)]}


def _job_command(job: str, workspace: Path) -> list[str]:
    """The command line of ``job`` (a key of ``SETTINGS``), writing into ``workspace`` (the zoo's)."""
    if job == "zoo":
        return [sys.executable, "-m", "tanas_core", "--workspace", str(workspace), *ZOO]
    return [sys.executable, "-m", "pytest", "-q", *TESTS]


def _timed_job(job: str, governor: str, spin: str) -> float:
    """Wall seconds of ``job`` in a fresh process and workspace (run from the repository root, where ``tests`` is)."""
    with tempfile.TemporaryDirectory(prefix="tanas-bench-load-") as home:
        env = dict(os.environ, TANAS_FAIR_THREADS="1" if governor == "on" else "0", GOMP_SPINCOUNT=spin)
        started = time.perf_counter()
        subprocess.run(_job_command(job, Path(home) / "ws"), env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
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


def _case_seconds(job: str, count: int, governor: str, spin: str) -> float:
    """One timed run of ``job`` beside ``count`` busy processes."""
    spinners = start_busy(count)
    try:
        time.sleep(1.0 if count else 0.0)  # let the busy loops take their cores
        return _timed_job(job, governor, spin)
    finally:
        stop_busy(spinners)


def bench_load(busy: int, repeats: int = 3, on_progress=None, job: str = "zoo") -> dict:
    """``{job, cores, busy, repeats, rows}``: ``job``'s median seconds over ``repeats`` runs alone and beside ``busy``
    busy processes for each of its ``SETTINGS`` (the cases taken round-robin, so a drift of the machine reaches all
    of them), with each loaded case's slowdown against the same setting alone, its fair share and whether it is
    within ``GOAL`` of it."""
    if job not in SETTINGS:
        raise ValueError(f"job must be one of {', '.join(SETTINGS)}, got {job!r}")
    cores = os.cpu_count() or 1
    cases = [(case, count, governor, spin) for case, count in (("alone", 0), ("beside busy processes", busy))
             for governor, spin in SETTINGS[job]]
    _timed_job(job, *SETTINGS[job][0])  # untimed: the first run reads the data pack from disk, the others from cache
    seconds: dict[int, list[float]] = {index: [] for index in range(len(cases))}
    for repeat in range(repeats):
        for index, (case, count, governor, spin) in enumerate(cases):
            if on_progress is not None:
                on_progress(f"run {repeat + 1}/{repeats}: {case}, governor {governor}, spin {spin}",
                            (repeat * len(cases) + index) / (repeats * len(cases)))
            seconds[index].append(_case_seconds(job, count, governor, spin))
    alone = {(governor, spin): statistics.median(seconds[index])
             for index, (_, count, governor, spin) in enumerate(cases) if not count}
    rows = []
    for index, (case, count, governor, spin) in enumerate(cases):
        median = statistics.median(seconds[index])
        slowdown, fair = median / alone[(governor, spin)], fair_share(cores, count)
        rows.append(dict(case=case, busy_processes=count, governor=governor, spin=spin, seconds=median,
                         runs=", ".join(f"{value:.1f}" for value in seconds[index]), x_alone=slowdown,
                         fair_share_x=fair, x_fair_share=slowdown / fair,
                         within_goal=slowdown / fair <= GOAL if count else None))
    return dict(job=job, cores=cores, busy=busy, repeats=repeats, rows=rows)
