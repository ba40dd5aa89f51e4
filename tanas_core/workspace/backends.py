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

import contextlib
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from tanas_core.errors import TanasError
from tanas_core.workspace.ray_backend import RayBackend

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


class _TensorsByValue:
    """A dict of tensors sent to worker processes as safetensors bytes. Pickled as tensors, each would go through a
    shared-memory file descriptor that stays open while the tensor lives: a report's 72 DenseNet-121 states of ~700
    tensors each ran out of open files (``--workers 2``)."""

    def __init__(self, tensors: dict):
        from safetensors.torch import save

        self.data = save({name: tensor.contiguous() for name, tensor in tensors.items()})

    def load(self) -> dict:
        from safetensors.torch import load

        return load(self.data)


class _ResultByValue:
    """A worker process's result, sent back as plain pickle bytes. Sent as it is, each tensor in it would travel
    through a shared-memory file descriptor held open while the tensor lives: a trained DenseNet-121 is 722 tensors,
    and ``zoo train --workers 2`` stopped after 27 of them at a limit of 20,000 open files."""

    def __init__(self, value: Any):
        import pickle

        self.data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self) -> Any:
        import pickle

        return pickle.loads(self.data)  # written by this library's own worker process, in ``_call``


def _call(function: Callable, *args) -> _ResultByValue:
    """``function(*args)`` in a worker process, with ``_TensorsByValue`` arguments loaded back into tensors; the
    result goes back by value (``_ResultByValue``)."""
    return _ResultByValue(function(*(arg.load() if isinstance(arg, _TensorsByValue) else arg for arg in args)))


@dataclass
class LocalBackend:
    """Runs the work on this machine: here, one piece after the other (``workers=1``), or in ``workers`` processes
    (CPU only; each gets ``cores // workers`` torch threads; started with ``spawn`` so torch's thread pools are not
    copied into them)."""

    workers: int = 1

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

        return LocalBackend(workers if resolve_device(device).type == "cpu" else 1)

    def put(self, value: Any) -> Any:
        """A handle to pass ``value`` to many pieces of work: in this process the value itself; to worker processes
        a dict of tensors (a network's weights) travels as bytes, see ``_TensorsByValue``."""
        import torch

        if not self.in_process and isinstance(value, dict) and value and all(
                isinstance(tensor, torch.Tensor) for tensor in value.values()):
            return _TensorsByValue(value)
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
        pending = dict(enumerate(items))
        for attempt in range(WORKER_RESTARTS + 1):
            try:
                for index, value in self._pool_map(function, pending, check):
                    del pending[index]
                    yield index, value
                return
            except _WorkerDied:
                if attempt == WORKER_RESTARTS:
                    raise TanasError("a worker process stopped abruptly (killed, or out of memory?), "
                                     f"{WORKER_RESTARTS + 1} times; everything finished before is kept in the "
                                     "workspace: run the same command again to go on, or use fewer workers "
                                     "(--workers 1)") from None

    def _pool_map(self, function: Callable, pending: dict[int, tuple],
                  check: Callable[[], None] | None) -> Iterator[tuple[int, Any]]:
        """One process pool over ``pending`` (index -> item); ``_WorkerDied`` when a worker process dies."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        import torch

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(threads,)) as pool:
            with _bare_main():  # the worker processes start during these submits
                futures = {pool.submit(_call, function, *item): index for index, item in pending.items()}
            try:
                for future in as_completed(futures):
                    if check is not None:
                        check()
                    try:
                        value = future.result()
                    except BrokenProcessPool:
                        raise _WorkerDied from None
                    # handed on, then no longer held here: a map keeps one result, not all it has received
                    # (a report's 240 VGG-16 Fishers of 7 MB each were all in memory until the map ended)
                    yield futures.pop(future), value.load()
            finally:
                for future in futures:
                    future.cancel()

    def describe(self) -> str:
        return "local (this process)" if self.workers == 1 else f"local ({self.workers} processes)"


@contextlib.contextmanager
def _bare_main():
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


# A worker process that dies (the out-of-memory killer, a native crash) costs only its unfinished items: they are
# resubmitted to a fresh pool, this many times.
WORKER_RESTARTS = 2


class _WorkerDied(Exception):
    """A process of the pool stopped abruptly; the pool is broken and its unfinished items must be resubmitted."""


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
