"""Background jobs: long work (zoo training, distances, searches, the demo) outside Streamlit's script thread.

A job is a row of the workspace's ``jobs`` table (schema below, with all the SQL that touches it): its kind, its
request (``Request.to_dict()``), its run settings (backend, device), status, progress, message, error, result and
info. The work runs in a daemon thread of the process that launched it; everything a page shows is read back from
the store, so a job survives a browser refresh and is visible from any browser session.

The runner does not know the kinds: it is given them (``JobRunner(workspace, kinds)``, with ``job_kinds.JOB_KINDS``
in the app), each a request type and a work function ``work(request, context) -> result dict``. A request is
validated (with the workspace) before its row is written, so a launched job cannot fail validation.

Statuses: ``queued`` -> ``running`` -> ``done`` | ``failed`` (a ``TanasError``'s message, or a bug's traceback) |
``cancelled`` (the cancel flag in the row is polled by ``RunContext.check``) | ``interrupted`` (the process that ran
it died: the next ``JobRunner`` marks such rows; ``relaunch`` reuses every finished artifact through the caches).
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

from tanas_core.errors import Cancelled, TanasError
from tanas_core.requests import Request
from tanas_core.workspace.context import RunContext, RunSettings
from tanas_core.workspace.store import Workspace

ACTIVE = ("queued", "running")

JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                -- zoo, distances, search, compare, demo
    params TEXT NOT NULL,              -- JSON {"request": Request.to_dict(), "run": RunSettings.to_dict()}
    status TEXT NOT NULL,              -- queued, running, done, failed, cancelled, interrupted
    progress REAL NOT NULL,
    message TEXT NOT NULL,
    error TEXT,
    result TEXT,                       -- JSON
    info TEXT NOT NULL,                -- JSON, e.g. the search run a job started
    owner TEXT NOT NULL,               -- host:pid of the process running it
    cancel INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""
_READY: set[str] = set()


@dataclass(frozen=True)
class JobKind:
    """A kind of job: the request type its parameters must parse into, and the work it runs."""

    request_type: type
    work: Callable[[Request, RunContext], dict]


@dataclass
class Job:
    """One row of the ``jobs`` table. ``progress`` in [0, 1]; ``request``, ``run``, ``result``, ``info`` are JSON."""

    id: str
    kind: str
    request: dict
    run: dict
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

    @property
    def on_ray(self) -> bool:
        return self.run.get("backend") == "ray"

    def elapsed(self, now: float | None = None) -> float:
        """Wall seconds since the job was launched (until its last update once it has ended)."""
        end = (now if now is not None else time.time()) if self.active else self.updated_at
        return max(0.0, end - self.created_at)

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left by linear extrapolation of the progress fraction (``None`` until 2 % and 5 s are done, or
        once the job has ended): a rough guide, phases differ in pace."""
        elapsed = self.elapsed(now)
        if not self.active or self.progress < 0.02 or elapsed < 5:
            return None
        return elapsed * (1 - self.progress) / self.progress


def clock(seconds: float) -> str:
    """``seconds`` as ``m:ss`` (``h:mm:ss`` from an hour)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def release_free_memory() -> bool:
    """Hand memory the process has freed back to the system (glibc's ``malloc_trim``); ``False`` where there is no
    glibc. A long-lived server runs each job in a thread of its own, and glibc keeps what those threads freed in
    per-thread arenas: the server's RSS then follows the largest jobs it ever ran rather than what it holds now (a
    demo-sized round of jobs left 1.7 GB resident of which 0.7 GB was free, ``bench soak``)."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------- SQL

def _table(workspace: Workspace) -> Workspace:
    key = str(workspace.db_path)
    if key not in _READY:
        with workspace.connect() as conn:
            conn.executescript(JOBS_SCHEMA)
        _READY.add(key)
    return workspace


def _insert(workspace: Workspace, job_id: str, kind: str, params: dict, owner: str) -> None:
    now = time.time()
    with _table(workspace).connect() as conn:
        conn.execute("INSERT INTO jobs VALUES (?, ?, ?, 'queued', 0, 'queued', NULL, NULL, '{}', ?, 0, ?, ?)",
                     (job_id, kind, json.dumps(params), owner, now, now))


def _update(workspace: Workspace, job_id: str, **values) -> None:
    values["updated_at"] = time.time()
    columns = ", ".join(f"{name} = ?" for name in values)
    with _table(workspace).connect() as conn:
        conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))


def _cancel_requested(workspace: Workspace, job_id: str) -> bool:
    with _table(workspace).connect() as conn:
        row = conn.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row["cancel"])


def _job_from_row(row) -> Job:
    params = json.loads(row["params"])
    if "request" not in params:  # a row written before requests had their own field
        params = dict(request={k: v for k, v in params.items() if k not in ("backend", "ray_address", "device")},
                      run={k: params[k] for k in ("backend", "ray_address", "device") if k in params})
    return Job(row["id"], row["kind"], params["request"], params.get("run", {}), row["status"], row["progress"],
               row["message"], row["error"], json.loads(row["result"]) if row["result"] else None,
               json.loads(row["info"]), row["owner"], row["created_at"], row["updated_at"])


def get_job(workspace: Workspace, job_id: str) -> Job:
    """The job ``job_id``; ``TanasError`` when there is none."""
    with _table(workspace).connect() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise TanasError(f"no job {job_id!r} in workspace {workspace.root}")
    return _job_from_row(row)


def list_jobs(workspace: Workspace, kind: str | tuple | None = None, limit: int = 50) -> list[Job]:
    """Jobs, newest first (optionally of one ``kind`` or of several)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    marks = ", ".join("?" for _ in kinds)
    where = f"WHERE kind IN ({marks})" if kinds else ""
    with _table(workspace).connect() as conn:
        rows = conn.execute(f"SELECT * FROM jobs {where} ORDER BY created_at DESC LIMIT ?",
                            (*kinds, limit)).fetchall()
    return [_job_from_row(row) for row in rows]


# ---------------------------------------------------------------------------------------------- running

def _owner() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


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


class _JobProgress:
    """A job's progress sink: writes the row, at most every 0.25 s unless the fraction moved by 5 %."""

    def __init__(self, workspace: Workspace, job_id: str):
        self.workspace, self.job_id = workspace, job_id
        self.last_write, self.last_fraction = 0.0, -1.0

    def __call__(self, message: str, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last_write < 0.25 and abs(fraction - self.last_fraction) < 0.05 and fraction < 1:
            return
        self.last_write, self.last_fraction = now, fraction
        _update(self.workspace, self.job_id, progress=float(fraction), message=str(message))


class JobRunner:
    """Launches jobs of the given ``kinds`` in daemon threads of this process and records everything in
    ``workspace``. Creating a runner marks the active jobs of dead processes as ``interrupted`` (a server restart).
    """

    def __init__(self, workspace: Workspace, kinds: Mapping[str, JobKind]):
        self.workspace = _table(workspace)
        self.kinds = dict(kinds)
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

    def request(self, kind: str, request: Request | dict) -> Request:
        """``request`` (or its JSON) as the kind's validated request type; ``TanasError`` otherwise."""
        if kind not in self.kinds:
            raise TanasError(f"unknown job kind {kind!r}: choose one of {', '.join(sorted(self.kinds))}")
        request_type = self.kinds[kind].request_type
        if not isinstance(request, request_type):
            if isinstance(request, Request):
                raise TanasError(f"a {kind} job takes a {request_type.__name__}, got {type(request).__name__}")
            request = request_type.from_dict(request)
        request.validate(self.workspace)
        return request

    def submit(self, kind: str, request: Request | dict, run: RunSettings | None = None) -> str:
        """Start a job of ``kind`` for ``request`` (validated here, with the workspace); returns its id at once.
        The same request already running here is attached to: its id is returned and nothing new starts."""
        request = self.request(kind, request)
        run = run or RunSettings()
        params = dict(request=request.to_dict(), run=run.to_dict())
        for job in list_jobs(self.workspace, kind, limit=200):
            if job.active and job.owner == self.owner and dict(request=job.request, run=job.run) == params:
                return job.id
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        _insert(self.workspace, job_id, kind, params, self.owner)
        thread = threading.Thread(target=self._run, args=(job_id, kind, request, run), daemon=True,
                                  name=f"tanas-job-{job_id}")
        self._threads[job_id] = thread
        thread.start()
        return job_id

    def relaunch(self, job_id: str) -> str:
        """Start a new job with the request of a finished one (e.g. an interrupted one)."""
        job = get_job(self.workspace, job_id)
        if job.active:
            raise TanasError(f"job {job_id} is still {job.status}; cancel it first")
        return self.submit(job.kind, job.request, RunSettings.from_dict(job.run))

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

    def _context(self, job_id: str, run: RunSettings) -> RunContext:
        def record_info(event) -> None:
            if isinstance(event, dict) and event.get("type") == "run_started":
                job = get_job(self.workspace, job_id)
                _update(self.workspace, job_id, info=json.dumps(dict(job.info, run_id=event["run_id"])))

        return run.context(self.workspace, on_progress=_JobProgress(self.workspace, job_id), on_event=record_info,
                           cancelled=lambda: _cancel_requested(self.workspace, job_id))

    def _run(self, job_id: str, kind: str, request: Request, run: RunSettings) -> None:
        _update(self.workspace, job_id, status="running", message="starting")
        try:
            result = self.kinds[kind].work(request, self._context(job_id, run))
        except Cancelled as error:
            _update(self.workspace, job_id, status="cancelled", message=str(error) or "cancelled")
        except TanasError as error:
            _update(self.workspace, job_id, status="failed", error=str(error), message="failed")
        except Exception as error:  # a bug: recorded with its traceback, never raised into a Streamlit script
            _update(self.workspace, job_id, status="failed", message="failed",
                    error=f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        else:
            _update(self.workspace, job_id, status="done", progress=1.0, message="done",
                    result=json.dumps(result or {}))
        finally:
            release_free_memory()
