"""Where fan-out work runs: in this process (``local``, the default, needs no Ray) or on a Ray cluster (``ray``).

Zoo training, Fisher computation and random-search candidates are lists of independent pieces of work (one per
network, per network-and-target pair, per candidate). Each caller hands such a list to ``Backend.map`` and stores
the results as they arrive.

Design choices:

* **The driver writes, workers compute.** A Ray task returns its result (a trained network's weights, a Fisher
  tensor, a candidate's accuracy) through Ray's object store, and the process that called ``map`` (the CLI or the
  app's job thread) writes it to the workspace. So the SQLite store has one writer, no shared filesystem is needed,
  and a result is stored the moment its task finishes (a driver killed mid-run keeps everything that had arrived).
  Limits: results travel through the object store (a full-width VGG-16 checkpoint is ~60 MB; a Fisher factor
  ``M x n`` floats can be larger: use ``projection_dim`` on big networks); per-step progress inside a task is not
  streamed, only finished tasks; if the driver dies, the results of tasks still running are lost (their work is
  redone by the next run, which reuses everything stored).
* **Workers need the data and the library.** The library travels with each task (Ray ``py_modules``); the Python
  packages of ``requirements.txt`` must be installed on every node, and every node needs the datasets
  (``TANAS_DATA_DIR`` is passed on, so the same path must hold them, or online download).
* **Exactness.** A task runs with as many torch threads as CPUs it asked for. CPU float reductions depend on the
  thread count, so a Ray run equals a local run with the same number of threads bit for bit (the tests check this).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from tanas_core.errors import TanasError
from tanas_core.workspace.ray_backend import RayBackend
from tanas_core.workspace.worker_pool import TensorsByValue, WorkerPool, check_memory

BACKENDS = ("local", "ray")


class Backend(Protocol):
    """What callers need from a place that runs fan-out work.

    ``in_process``: work runs here, one piece after the other, so per-step progress and cancellation reach it (and
    objects such as callbacks can be passed to it); ``worker_device(device)``: the device a piece of work should use;
    ``training(workers, device)``: the backend that trains zoo networks (local: ``workers`` processes on a CPU);
    ``put`` / ``map``: hand values and work to the workers; ``describe``: one line for people.
    """

    in_process: bool

    def worker_device(self, device: str) -> str: ...

    def training(self, workers: int, device: str) -> Backend: ...

    def put(self, value: Any) -> Any: ...

    def map(self, function: Callable, items: Sequence[tuple], *,
            check: Callable[[], None] | None = None) -> Iterator[tuple[int, Any]]: ...

    def describe(self) -> str: ...


@dataclass
class LocalBackend:
    """Runs the work on this machine: here, one piece after the other (``workers=1``), or in ``workers`` processes
    (CPU only; each gets ``cores // workers`` torch threads; started with ``spawn`` so torch's thread pools are not
    copied into them; see ``worker_pool`` for what a dead worker costs and reports)."""

    workers: int = 1
    log_dir: Path | None = None  # workers' stack files, deaths.jsonl, peaks.json (a temporary folder when None)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise TanasError(f"workers must be >= 1, got {self.workers}")

    @property
    def in_process(self) -> bool:
        return self.workers == 1

    def worker_device(self, device: str) -> str:
        """Worker processes are CPU-only; here, the caller's device."""
        return device if self.in_process else "cpu"

    def training(self, workers: int, device: str) -> LocalBackend:
        """``workers`` processes on a CPU; one (this process) on an accelerator, which trains one network at a
        time."""
        from tanas_core.networks.devices import resolve_device

        return replace(self, workers=workers if resolve_device(device).type == "cpu" else 1)

    def put(self, value: Any) -> Any:
        """A handle to pass ``value`` to many pieces of work: in this process the value itself; to worker processes
        a dict of tensors (a network's weights) travels as bytes, see ``TensorsByValue``."""
        import torch

        if not self.in_process and isinstance(value, dict) and value and all(
                isinstance(tensor, torch.Tensor) for tensor in value.values()):
            return TensorsByValue(value)
        return value

    def map(self, function: Callable, items: Sequence[tuple], *,
            check: Callable[[], None] | None = None) -> Iterator[tuple[int, Any]]:
        """``(index, function(*items[index]))`` for every item: in order with one worker, in the order they finish
        with several. ``check()`` (e.g. ``RunContext.check``, which raises ``Cancelled``) runs between items."""
        if self.workers == 1:
            for index, item in enumerate(items):
                if check is not None:
                    check()
                yield index, function(*item)
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        items = dict(enumerate(items))
        if self.log_dir is not None:
            yield from self._pool(function, threads, self.log_dir).map(function, items, check)
            return
        with tempfile.TemporaryDirectory(prefix="tanas-workers-") as log_dir:
            yield from self._pool(function, threads, Path(log_dir)).map(function, items, check)

    def _pool(self, function: Callable, threads: int, log_dir: Path) -> WorkerPool:
        """A pool of ``workers`` processes, refused when their measured peak memory does not fit (``check_memory``)."""
        check_memory(self.workers, getattr(function, "__name__", "work"), log_dir)
        return WorkerPool(self.workers, threads, log_dir)

    def describe(self) -> str:
        return "local (this process)" if self.workers == 1 else f"local ({self.workers} processes)"


def make_backend(name: str = "local", address: str | None = None, workers: int = 1,
                 cpus_per_task: int = 1) -> Backend:
    """``"local"`` (``workers`` processes) or ``"ray"`` (``address``: a running cluster; empty or ``None``: a local
    Ray); ``ValueError`` for anything else."""
    if name == "local":
        if address:
            raise TanasError("a Ray address needs the ray backend (--backend ray)")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(address=address or None, cpus_per_task=cpus_per_task)
    raise TanasError(f"unknown backend {name!r}: choose {' or '.join(BACKENDS)}")
