"""A long mixed run that must hold (``bench soak``): the app's job runner trains every architecture's zoo with two
worker processes, then runs a validation report and a FUSE search side by side, while a second client (another
process with its own runner on the same workspace) submits jobs of its own; all of it ``rounds`` times, with one more
seed each round (new networks, a bigger report, another search). At the end every artifact the index
names is checked against its sha256.

What it reports: jobs finished per client, worker deaths and retries (``logs/workers/deaths.jsonl``), the peak RSS
of the workers per kind of work (``peaks.json``), and the parent's RSS (this process, which hosts the job runner as
the app server does) sampled every second: its peak, its final value and its slope after warm-up (MiB per minute,
least squares over the samples after the first quarter of the run) and after each round: rounds do the same kinds
of work, so a flat parent holds about the same RSS after every round from the second on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from tanas_core.jobs.kinds import job_runner
from tanas_core.requests import DemoRequest, DistanceRequest, ZooRequest
from tanas_core.requests.operations import every_architecture
from tanas_core.workspace.archive import verify_artifacts
from tanas_core.workspace.store import Workspace
from tanas_core.workspace.worker_pool import WORKER_RESTARTS, read_deaths, read_peaks, rss_mb

WARM_UP = 0.25  # the slope leaves out this first share of the samples: imports, data packs and allocators settle


def _main_jobs(workspace: Workspace, demo: DemoRequest, workers: int, rounds: int,
               on_progress) -> tuple[list[dict], list[float]]:
    """The first client, ``rounds`` times with one more seed each round: the zoo of every architecture with
    ``workers`` processes, then the demo's validation report (its Fishers in ``workers`` processes) and a FUSE search
    at once. Returns ``{client, round, kind, status, seconds, error}`` per job and this process's RSS after each
    round (MiB)."""
    runner, jobs, after_round = job_runner(workspace), [], []

    def run(round_index: int, batch: list[tuple[str, object]]) -> None:
        started = time.time()
        ids = [(kind, runner.submit(kind, request)) for kind, request in batch]
        for kind, job_id in ids:
            job = runner.wait(job_id)
            jobs.append(dict(client="runner", round=round_index + 1, kind=kind, status=job.status,
                             seconds=round(time.time() - started, 1), error=(job.error or "")[:300]))
            if on_progress is not None:
                on_progress(f"runner: round {round_index + 1}, {kind} {job.status}", len(jobs) / (3 * rounds))

    for index in range(rounds):
        run(index, [("zoo", ZooRequest(suite=demo.suite, archs=demo.archs, seeds=index + 1, preset=demo.preset,
                                       workers=workers))])
        single = replace(demo, archs=("vgg16",), verdict_seeds=demo.verdict_seeds + index)
        run(index, [("validate", replace(single.validation(), workers=workers)),
                    ("search", replace(single.search(), seed=index))])
        after_round.append(rss_mb(os.getpid()))
    return jobs, after_round


def second_client(root: str, suite: str, preset: str, rounds: str) -> None:
    """The second client, in its own process: ``rounds`` times with one more seed each round, a zoo job and a
    distances job on the same workspace, one after the other; prints one JSON line per job."""
    runner = job_runner(Workspace(root))
    for index in range(int(rounds)):
        for kind, request in (("zoo", ZooRequest(suite=suite, archs=("vgg16",), seeds=index + 1, preset=preset)),
                              ("distances", DistanceRequest(suite=suite, archs=("vgg16",), seeds=index + 1,
                                                            preset=preset))):
            started = time.time()
            job = runner.wait(runner.submit(kind, request))
            print(json.dumps(dict(client="second process", round=index + 1, kind=kind, status=job.status,
                                  seconds=round(time.time() - started, 1), error=(job.error or "")[:300])),
                  flush=True)


class _Sampler:
    """This process's RSS every ``interval`` seconds, in a thread, until ``stop``."""

    def __init__(self, interval: float = 1.0):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True, name="tanas-soak-rss")

    def _run(self, interval: float) -> None:
        start = time.monotonic()
        while not self._stop.wait(interval if self.samples else 0.0):
            value = rss_mb(os.getpid())
            if value is not None:
                self.samples.append((time.monotonic() - start, value))

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def slope_mib_per_minute(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MiB)`` samples after the warm-up share, MiB per minute; ``None`` with
    fewer than 10 samples left."""
    kept = samples[int(len(samples) * WARM_UP):]
    if len(kept) < 10:
        return None
    mean_t = sum(t for t, _ in kept) / len(kept)
    mean_m = sum(m for _, m in kept) / len(kept)
    spread = sum((t - mean_t) ** 2 for t, _ in kept)
    return 60.0 * sum((t - mean_t) * (m - mean_m) for t, m in kept) / spread if spread else None


def bench_soak(root: Path, suite: str = "mnist4", preset: str = "demo", archs: tuple | None = None,
               workers: int = 2, rounds: int = 3, on_progress=None) -> dict:
    """Run the soak on a workspace at ``root`` (fresh, or one to resume) and return ``{jobs, deaths, retries,
    worker_peaks_mb, parent, artifacts, seconds}`` (``parent``: peak, final and slope of this process's RSS, and
    its RSS after each round)."""
    workspace = Workspace(root)
    demo = DemoRequest(suite=suite, preset=preset, archs=tuple(archs or every_architecture()))
    demo.validate(workspace)
    started = time.time()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")])))
    client = subprocess.Popen([sys.executable, "-c", "import sys; from tanas_core.bench.soak import second_client; "
                               "second_client(*sys.argv[1:])", str(workspace.root), suite, preset, str(rounds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with _Sampler() as sampler:
        jobs, after_round = _main_jobs(workspace, demo, workers, rounds, on_progress)
        out, err = client.communicate()
    jobs += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if client.returncode != 0:
        jobs.append(dict(client="second process", kind="(process)", status=f"exit {client.returncode}",
                         seconds=None, error=err[-300:]))
    log_dir = workspace.root / "logs" / "workers"
    deaths = read_deaths(log_dir)
    values = [m for _, m in sampler.samples]
    return dict(suite=suite, preset=preset, archs=list(demo.archs), workers=workers, rounds=rounds, jobs=jobs,
                deaths=deaths, retries=sum(1 for d in deaths if d["attempt"] <= WORKER_RESTARTS),
                worker_peaks_mb=read_peaks(log_dir),
                parent=dict(peak_mb=max(values, default=None), final_mb=values[-1] if values else None,
                            slope_mb_per_min=slope_mib_per_minute(sampler.samples), samples=len(values),
                            after_round_mb=[round(value, 1) for value in after_round if value is not None]),
                artifacts=verify_artifacts(workspace), seconds=time.time() - started)

