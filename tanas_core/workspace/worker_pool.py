"""Worker processes that say how they died, and a pool that loses only the item a dead worker held.

``concurrent.futures.ProcessPoolExecutor`` answers a dead worker with ``BrokenProcessPool``: every item in flight
is lost, and nothing says which item the worker held, which signal ended it or how much memory it had. A
``LocalBackend`` with several workers runs its items through ``WorkerPool`` instead:

* each worker is one ``spawn`` process with its own pipe, so the parent knows which item each one holds;
* ``faulthandler`` writes a dying worker's Python stack (a native crash: SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL)
  to a file of its own;
* the parent reads each busy worker's resident memory (``/proc``, Linux) while it waits, so a worker killed with
  SIGKILL (the out-of-memory killer's signal, which no handler sees) is reported with the memory it last had;
* a death is a ``WorkerDeath`` (item, exit code or signal, RSS, the stack if one was written): logged, appended to
  ``deaths.jsonl`` in the log folder, and the item goes to a fresh worker while the others keep going. An item whose
  workers die ``WORKER_RESTARTS + 1`` times stops the run with an error naming it and the cause.
* Values travel as plain pickle bytes both ways: torch's own multiprocessing pickler would send every tensor through
  a shared-memory file descriptor held open while the tensor lives (a DenseNet-121 is 722 tensors; ``--workers 2``
  ran out of open files).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import resource
import signal
import sys
import time
import traceback
import types
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tanas_core.errors import TanasError

# A worker process that dies (the out-of-memory killer, a native crash) costs only the item it held: the item goes to
# a fresh worker, this many times.
WORKER_RESTARTS = 2

LOG = logging.getLogger("tanas_core.workers")


@dataclass
class WorkerDeath:
    """One worker process that stopped while it held an item. ``exitcode``: negative for a signal (``-9``: SIGKILL);
    ``rss_mb``: its resident memory when last read (MiB; ``None`` where ``/proc`` is missing); ``stack``: the end
    of what ``faulthandler`` wrote (empty for SIGKILL, which no handler sees)."""

    pid: int
    item: str
    exitcode: int
    rss_mb: float | None
    stack: str
    attempt: int

    @property
    def cause(self) -> str:
        """The exit in words: ``"SIGKILL (signal 9)"`` or ``"exit code 3"``."""
        if self.exitcode < 0:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = "an unknown signal"
            return f"{name} (signal {-self.exitcode})"
        return f"exit code {self.exitcode}"

    def describe(self) -> str:
        """One paragraph for people: which item, why, how much memory, the stack when there is one."""
        memory = f", holding {self.rss_mb:,.0f} MiB" if self.rss_mb is not None else ""
        hint = " (the out-of-memory killer sends SIGKILL)" if self.exitcode == -signal.SIGKILL else ""
        text = f"worker process {self.pid} stopped abruptly on {self.item}: {self.cause}{hint}{memory}"
        return text + (f"\n{self.stack}" if self.stack else "")


class TensorsByValue:
    """A dict of tensors sent to worker processes as safetensors bytes (one copy for many items, see
    ``LocalBackend.put``), loaded back into tensors in the worker."""

    def __init__(self, tensors: dict):
        from safetensors.torch import save

        self.data = save({name: tensor.contiguous() for name, tensor in tensors.items()})

    def load(self) -> dict:
        from safetensors.torch import load

        return load(self.data)


def describe_item(function: Callable, item: tuple) -> str:
    """``"train_zoo_network(ld8, mnist-digit0, densenet121, ...)"``: the work and its named or scalar arguments."""
    def short(value: Any) -> str:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return str(value)
        return str(getattr(value, "name", type(value).__name__))

    return f"{getattr(function, '__name__', 'work')}({', '.join(short(value) for value in item)})"


def _serve(conn, threads: int, log_path: str) -> None:
    """A worker process: run ``(index, function, args)`` messages until ``None`` (or the parent is gone), answering
    ``("ok", index, value, peak_rss_mb)`` or ``("error", index, exception, text)``."""
    import faulthandler

    import torch

    torch.set_num_threads(threads)
    stack_file = open(log_path, "w")  # kept open: faulthandler writes to its descriptor when the process dies
    faulthandler.enable(file=stack_file)
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        if message == b"":
            return
        index, function, args = pickle.loads(message)  # written by this library's parent process, in ``WorkerPool``
        try:
            answer = ("ok", index, function(*(arg.load() if isinstance(arg, TensorsByValue) else arg
                                              for arg in args)), _peak_rss_mb())
        except Exception as error:  # handed to the parent, which raises it as itself
            answer = ("error", index, error, traceback.format_exc())
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that cannot travel travels as its text
            data = pickle.dumps(("error", index, TanasError(str(answer[2])), answer[3]))
        conn.send_bytes(data)


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB: Linux's ``VmHWM``, the high-water mark of this process's
    own memory (``ru_maxrss`` survives ``exec``, so a spawned worker would report the parent's size when it was
    started); elsewhere ``ru_maxrss`` (bytes on macOS)."""
    own = _proc_field_mb(Path("/proc/self/status"), "VmHWM")
    if own is not None:
        return own
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


def _proc_field_mb(path: Path, field: str) -> float | None:
    """A ``FIELD:  N kB`` line of a ``/proc`` file (``status``, ``meminfo``) in MiB; ``None`` where it is missing."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` now, MiB; ``None`` where ``/proc`` is missing or the process is gone."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def _receive(conn) -> bytes | None:
    """The answer waiting on ``conn``; ``None`` when there is none yet, or the worker's end closed (it died: the
    connection is closed here so the caller sees it)."""
    if not conn.poll():
        return None
    try:
        return conn.recv_bytes()
    except (EOFError, OSError):
        conn.close()
        return None


class _Worker:
    def __init__(self, context, threads: int, log_dir: Path, start: Callable):
        self.conn, child = context.Pipe()
        self.stack_path = log_dir / f"worker-{time.time_ns()}.log"
        self.process = context.Process(target=_serve, args=(child, threads, str(self.stack_path)), daemon=True)
        start(self.process)
        child.close()
        self.item: tuple[int, str] | None = None  # (index, label) of the item it holds
        self.rss: float | None = None

    def give(self, index: int, label: str, function: Callable, args: tuple) -> None:
        self.item = (index, label)
        self.conn.send_bytes(pickle.dumps((index, function, args), protocol=pickle.HIGHEST_PROTOCOL))

    def stop(self, wait: float = 5.0) -> None:
        """Ask it to leave, then make sure it has."""
        try:
            self.conn.send_bytes(b"")
        except OSError:
            pass
        self.process.join(wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def death(self, attempt: int) -> WorkerDeath:
        self.process.join()
        try:
            stack = self.stack_path.read_text()[-3000:].strip()
            self.stack_path.unlink()  # kept in the death's record
        except OSError:
            stack = ""
        return WorkerDeath(pid=self.process.pid, item=self.item[1], exitcode=self.process.exitcode or 0,
                           rss_mb=None if self.rss is None else round(self.rss, 1), stack=stack, attempt=attempt)


class WorkerPool:
    """``workers`` spawn processes with ``threads`` torch threads each; ``log_dir`` holds the workers' stack files
    (removed when their worker leaves cleanly), ``deaths.jsonl`` and ``peaks.json`` (the highest peak RSS of a
    worker per kind of work, MiB)."""

    def __init__(self, workers: int, threads: int, log_dir: Path, start: Callable = lambda process: process.start()):
        import multiprocessing

        self.workers, self.threads, self.log_dir, self._start = workers, threads, Path(log_dir), start
        self._context = multiprocessing.get_context("spawn")
        self.deaths: list[WorkerDeath] = []

    def map(self, function: Callable, items: dict[int, tuple],
            check: Callable[[], None] | None = None) -> Iterator[tuple[int, Any]]:
        """``(index, function(*items[index]))`` in the order they finish. A worker's exception is raised here as
        itself; ``check()`` runs at least every half second (it raises to stop, and the workers are stopped)."""
        from multiprocessing.connection import wait

        self.log_dir.mkdir(parents=True, exist_ok=True)
        queue, attempts, workers = deque(items.items()), {}, []
        label = {index: describe_item(function, item) for index, item in items.items()}
        try:
            while queue or any(w.item for w in workers):
                self._hand_out(function, queue, workers, label)
                busy = [w for w in workers if w.item is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
                if check is not None:
                    check()
                for worker in busy:
                    worker.rss = rss_mb(worker.process.pid) or worker.rss
                    data = _receive(worker.conn)
                    if data is not None:
                        yield self._answer(function, worker, data)
                    elif not worker.process.is_alive() or worker.conn.closed:
                        workers.remove(worker)
                        self._died(worker, queue, attempts, items)
        finally:  # done: each worker leaves when asked; stopped early (cancel, error): busy ones are killed
            for worker in workers:
                worker.stop(wait=5.0 if worker.item is None else 0.0)
                if worker.process.exitcode == 0:
                    worker.stack_path.unlink(missing_ok=True)

    def _hand_out(self, function: Callable, queue: deque, workers: list, label: dict) -> None:
        while queue and (len(workers) < self.workers or any(w.item is None for w in workers)):
            idle = next((w for w in workers if w.item is None), None)
            if idle is None:
                with bare_main():  # the worker process starts here
                    idle = _Worker(self._context, self.threads, self.log_dir, self._start)
                workers.append(idle)
            index, item = queue.popleft()
            idle.give(index, label[index], function, item)

    def _answer(self, function: Callable, worker: _Worker, data: bytes) -> tuple[int, Any]:
        status, index, value, extra = pickle.loads(data)  # our own worker's answer
        worker.item = None
        if status == "error":
            LOG.debug("worker traceback:\n%s", extra)
            raise value
        self._record_peak(getattr(function, "__name__", "work"), extra)
        return index, value

    def _died(self, worker: _Worker, queue: deque, attempts: dict, items: dict) -> None:
        index = worker.item[0]
        attempts[index] = attempts.get(index, 0) + 1
        death = worker.death(attempts[index])
        self.deaths.append(death)
        with open(self.log_dir / "deaths.jsonl", "a") as log:
            log.write(json.dumps(dict(asdict(death), time=time.time(), cause=death.cause)) + "\n")
        if attempts[index] > WORKER_RESTARTS:
            raise TanasError(f"{death.describe()}\nIt stopped {attempts[index]} times on this item; everything "
                             "finished before is kept in the workspace: run the same command again to go on, or use "
                             f"fewer workers (--workers 1). Worker logs: {self.log_dir}")
        LOG.warning("%s\nIts item goes to a fresh worker (attempt %d of %d); finished work is kept.",
                    death.describe(), attempts[index] + 1, WORKER_RESTARTS + 1)
        queue.appendleft((index, items[index]))

    def _record_peak(self, kind: str, peak_mb: float) -> None:
        peaks = read_peaks(self.log_dir)
        if peak_mb > peaks.get(kind, 0.0):
            peaks[kind] = round(peak_mb, 1)
            (self.log_dir / "peaks.json").write_text(json.dumps(peaks, indent=1))


def read_peaks(log_dir: Path) -> dict[str, float]:
    """``{kind of work: the highest peak RSS a worker of it reached, MiB}`` from ``log_dir/peaks.json`` (empty when
    none was measured)."""
    try:
        return json.loads((Path(log_dir) / "peaks.json").read_text())
    except (OSError, ValueError):
        return {}


def read_deaths(log_dir: Path) -> list[dict]:
    """Every ``WorkerDeath`` recorded in ``log_dir/deaths.jsonl``, as dicts with their ``cause`` and ``time``."""
    path = Path(log_dir) / "deaths.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def available_mb() -> float | None:
    """Memory the machine can give new processes now (``MemAvailable``), MiB; ``None`` where ``/proc`` is missing."""
    return _proc_field_mb(Path("/proc/meminfo"), "MemAvailable")


def check_memory(workers: int, kind: str, log_dir: Path) -> None:
    """``TanasError`` when ``workers`` processes of work ``kind`` would need more memory than is available: each is
    counted at the highest peak a worker of that kind reached in this workspace (``peaks.json``; nothing is refused
    before one was measured)."""
    peak = read_peaks(log_dir).get(kind)
    available = available_mb()
    if not peak or available is None or workers * peak <= available:
        return
    fits = int(available // peak)
    raise TanasError(f"{workers} worker processes need about {workers * peak:,.0f} MiB ({kind}: {peak:,.0f} MiB "
                     f"each, the highest peak measured in this workspace) but {available:,.0f} MiB is available "
                     f"now: use --workers {max(1, fits)}" + ("" if fits >= 1 else " (in this process)")
                     + " or free memory first")


@contextlib.contextmanager
def bare_main():
    """Start worker processes without re-running this process's ``__main__``.

    ``spawn`` re-executes the parent's ``__main__`` file in every worker. Streamlit installs the page script being run
    as ``__main__`` (in the app server and in AppTest), so a worker would run a page and die. The work functions
    handed to ``map`` live in importable modules, so the workers need no ``__main__`` at all."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
