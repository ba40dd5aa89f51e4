"""A long mixed run that must hold (``bench soak``): the app's job runner trains every architecture's zoo with two
worker processes, then runs a validation report and a FUSE search side by side, while a second client (another
process with its own runner on the same workspace) submits jobs of its own; all of it ``rounds`` times, with one more
seed each round (new networks, a bigger report, another search). At the end every artifact the index
names is checked against its sha256.

What it reports: jobs finished per client, worker deaths and retries (``logs/workers/deaths.jsonl``), the peak RSS
of the workers per kind of work (``peaks.json``), and the parent's RSS (this process, which hosts the job runner as
the app server does): its peak while working (sampled every second), its RSS after each round and after the whole
run (every job of both clients ended), and the least-squares slope of the after-round values from the second round
on, MiB per round: rounds do the same kinds of work, so a flat parent holds about the same RSS after every round
once the first has loaded data and allocators. (A slope over the samples taken during work follows the work inside
the rounds, which grows with the seeds, and the last sample is taken mid-job: neither says whether memory is kept.)
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


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points (y per unit of x); ``None`` with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def bench_soak(root: Path, suite: str = "mnist4", preset: str = "demo", archs: tuple | None = None,
               workers: int = 2, rounds: int = 3, on_progress=None) -> dict:
    """Run the soak on a workspace at ``root`` (fresh, or one to resume) and return ``{jobs, deaths, retries,
    worker_peaks_mb, parent, artifacts, seconds}`` (``parent``: this process's RSS, MiB: peak while working, after
    each round, after the run, and the slope of the after-round values from round 2 on, per round)."""
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
    final = rss_mb(os.getpid())  # every job of both clients has ended
    log_dir = workspace.root / "logs" / "workers"
    deaths = read_deaths(log_dir)
    values = [m for _, m in sampler.samples]
    settled = [(index, mb) for index, mb in enumerate(after_round) if index >= 1 and mb is not None]
    return dict(suite=suite, preset=preset, archs=list(demo.archs), workers=workers, rounds=rounds, jobs=jobs,
                deaths=deaths, retries=sum(1 for d in deaths if d["attempt"] <= WORKER_RESTARTS),
                worker_peaks_mb=read_peaks(log_dir),
                parent=dict(peak_mb=max(values, default=None), final_mb=final, samples=len(values),
                            after_round_mb=[round(value, 1) for value in after_round if value is not None],
                            slope_mb_per_round=least_squares_slope(settled)),
                artifacts=verify_artifacts(workspace), seconds=time.time() - started)

