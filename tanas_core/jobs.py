"""Background jobs: long work (zoo training, distances, searches, the demo) outside Streamlit's script thread.

A job is a row of the workspace's ``jobs`` table (status, progress, message, error, result, info); the work runs in a daemon thread of the process that launched it. Everything a page shows is read back
from the store, so a job survives a browser refresh and is visible from any browser session; two users' jobs have
separate ids, rows and results.

Statuses: ``queued`` -> ``running`` -> ``done`` | ``failed`` (the error message is kept) | ``cancelled`` (a cancel
request is a flag in the row, polled by the work between steps) | ``interrupted`` (the process that ran it died: a
server restart marks such rows when the next ``JobRunner`` starts; relaunch with ``JobRunner.relaunch``, which reuses
every finished artifact through the store's caches).
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Callable

from .store import Workspace

ACTIVE = ("queued", "running")


@dataclass
class Job:
    """One row of the ``jobs`` table. ``progress`` in [0, 1]; ``result`` and ``info`` are JSON objects."""

    id: str
    kind: str
    params: dict
    status: str
    progress: float
    message: str
    error: str | None
    result: dict | None
    info: dict
    owner: str
    created_at: float
    updated_at: float

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class JobContext:
    """What a job's work function gets: its workspace, ``progress(message, fraction)``, ``should_stop()``,
    and ``info(**values)`` (e.g. the id of the search run it started)."""

    def __init__(self, workspace: Workspace, job_id: str):
        self.workspace = workspace
        self.job_id = job_id
        self._last_write = 0.0
        self._last_fraction = -1.0

    def progress(self, message: str, fraction: float) -> None:
        # Steps can come every few milliseconds; a row write per step would only contend for the database.
        now = time.monotonic()
        if now - self._last_write < 0.25 and abs(fraction - self._last_fraction) < 0.05 and fraction < 1:
            return
        self._last_write, self._last_fraction = now, fraction
        _update(self.workspace, self.job_id, progress=max(0.0, min(1.0, float(fraction))), message=str(message))

    def should_stop(self) -> bool:
        with self.workspace.connect() as conn:
            row = conn.execute("SELECT cancel FROM jobs WHERE id = ?", (self.job_id,)).fetchone()
        return bool(row and row["cancel"])

    def info(self, **values) -> None:
        job = get_job(self.workspace, self.job_id)
        _update(self.workspace, self.job_id, info=json.dumps(dict(job.info, **values)))


WorkFunction = Callable[[JobContext, dict], dict]
_REGISTRY: dict[str, WorkFunction] = {}


def register(kind: str) -> Callable[[WorkFunction], WorkFunction]:
    """Decorator: ``@register("zoo") def work(ctx, params) -> result dict``."""
    def wrap(function: WorkFunction) -> WorkFunction:
        _REGISTRY[kind] = function
        return function
    return wrap


def _owner() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _update(workspace: Workspace, job_id: str, **values) -> None:
    values["updated_at"] = time.time()
    columns = ", ".join(f"{name} = ?" for name in values)
    with workspace.connect() as conn:
        conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))


def _job_from_row(row) -> Job:
    return Job(row["id"], row["kind"], json.loads(row["params"]), row["status"], row["progress"], row["message"],
               row["error"], json.loads(row["result"]) if row["result"] else None, json.loads(row["info"]),
               row["owner"], row["created_at"], row["updated_at"])


def get_job(workspace: Workspace, job_id: str) -> Job:
    """The job ``job_id``; ``ValueError`` when there is none."""
    with workspace.connect() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise ValueError(f"no job {job_id!r} in workspace {workspace.root}")
    return _job_from_row(row)


def list_jobs(workspace: Workspace, kind: str | None = None, limit: int = 50) -> list[Job]:
    """Jobs, newest first (optionally of one ``kind``)."""
    with workspace.connect() as conn:
        rows = conn.execute("SELECT * FROM jobs WHERE (? IS NULL OR kind = ?) ORDER BY created_at DESC LIMIT ?",
                            (kind, kind, limit)).fetchall()
    return [_job_from_row(row) for row in rows]


def _process_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename:
        return True  # another machine's process: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Launches jobs in daemon threads of this process and records everything in ``workspace``.

    Creating a runner marks the active jobs of dead processes as ``interrupted`` (a server restart).
    """

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.owner = _owner()
        self._threads: dict[str, threading.Thread] = {}
        self.recover()

    def recover(self) -> list[str]:
        """Mark ``queued`` / ``running`` jobs whose process is gone as ``interrupted``; returns their ids."""
        lost = [job.id for job in list_jobs(self.workspace, limit=10_000)
                if job.active and job.owner != self.owner and not _process_alive(job.owner)]
        for job_id in lost:
            _update(self.workspace, job_id, status="interrupted",
                    message="the process running this job stopped (server restart?); relaunch it to finish: "
                            "finished networks, Fisher results and searches are reused")
        return lost

    def submit(self, kind: str, params: dict) -> str:
        """Start a job of ``kind`` (``zoo``, ``distances``, ``search``, ``compare``, ``demo``) with JSON ``params``;
        returns its id at once. ``ValueError`` for an unknown kind or non-JSON params."""
        _load_work_functions()
        if kind not in _REGISTRY:
            raise ValueError(f"unknown job kind {kind!r}: choose one of {', '.join(sorted(_REGISTRY))}")
        try:
            encoded = json.dumps(params)
        except TypeError as error:
            raise ValueError(f"job parameters must be JSON: {error}") from None
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        now = time.time()
        with self.workspace.connect() as conn:
            conn.execute("INSERT INTO jobs VALUES (?, ?, ?, 'queued', 0, 'queued', NULL, NULL, '{}', ?, 0, ?, ?)",
                         (job_id, kind, encoded, self.owner, now, now))
        thread = threading.Thread(target=self._run, args=(job_id, kind, json.loads(encoded)), daemon=True,
                                  name=f"tanas-job-{job_id}")
        self._threads[job_id] = thread
        thread.start()
        return job_id

    def relaunch(self, job_id: str) -> str:
        """Start a new job with the parameters of a finished one (e.g. an interrupted one)."""
        job = get_job(self.workspace, job_id)
        if job.active:
            raise ValueError(f"job {job_id} is still {job.status}; cancel it first")
        return self.submit(job.kind, job.params)

    def cancel(self, job_id: str) -> None:
        """Ask a job to stop at its next step (its finished work stays in the store)."""
        job = get_job(self.workspace, job_id)
        if job.active:
            _update(self.workspace, job_id, cancel=1, message="cancelling...")

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job's thread ends (tests, CLI); returns the final row."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return get_job(self.workspace, job_id)

    def _run(self, job_id: str, kind: str, params: dict) -> None:
        context = JobContext(self.workspace, job_id)
        _update(self.workspace, job_id, status="running", message="starting")
        try:
            result = _REGISTRY[kind](context, params)
        except InterruptedError as error:
            _update(self.workspace, job_id, status="cancelled", message=str(error) or "cancelled")
        except ValueError as error:
            _update(self.workspace, job_id, status="failed", error=str(error), message="failed")
        except Exception as error:  # recorded for the page, never raised into a Streamlit script
            _update(self.workspace, job_id, status="failed", message="failed",
                    error=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}")
        else:
            if context.should_stop():
                _update(self.workspace, job_id, status="cancelled", message="cancelled",
                        result=json.dumps(result or {}))
            else:
                _update(self.workspace, job_id, status="done", progress=1.0, message="done",
                        result=json.dumps(result or {}))


def _load_work_functions() -> None:
    from . import job_kinds  # noqa: F401  (registers the work functions)
