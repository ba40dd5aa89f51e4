"""The Ray backend: every piece of fan-out work as one Ray task (``--backend ray``); the design notes are in
``backends``. Ray itself is imported only when a backend connects, so the local backend runs without it."""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tanas_core.errors import TanasError

# A private local cluster (started here, read by Ray's processes when they start): no token authentication to set
# up, and its workers at the niceness of the process that asked for the work. Ray starts workers at nice 15 to keep
# its own daemons responsive; for a cluster that exists to run this user's job, that leaves its tasks a small share
# of a machine other processes keep busy (the local backend's workers run at the caller's niceness).
PRIVATE_CLUSTER_ENVIRONMENT = {"RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}


def use_private_cluster_environment() -> None:
    """Set ``PRIVATE_CLUSTER_ENVIRONMENT`` in this process's environment (a caller's own settings win) before a
    local Ray starts here: the backend's private cluster, or one a notebook or the tests start themselves."""
    for name, value in PRIVATE_CLUSTER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


# Ray waits a fixed 30 s for a new node's raylet to register and then gives up with a bare Exception; on a machine
# other processes keep busy the raylet can take longer, and a second start then usually succeeds.
LOCAL_START_ATTEMPTS = 3
_STARTUP_TIMEOUT = "timed out during startup"


def start_local_ray(ray, attempts: int = LOCAL_START_ATTEMPTS, **init_options) -> None:
    """``ray.init(**init_options)`` for a cluster started on this machine, tried up to ``attempts`` times when Ray's
    node startup times out (anything else is raised at once); the last timeout is raised as a ``TanasError`` that
    says the machine is too busy."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**init_options)
            return
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception for this timeout
            if _STARTUP_TIMEOUT not in str(error):
                raise
            ray.shutdown()  # the half-started node's processes
            if attempt == attempts:
                raise TanasError(f"a local Ray did not start: its node timed out {attempts} times (the machine is "
                                 "busy). Try again when it is quieter, or use the local backend") from error


@dataclass
class RayBackend:
    """Runs every piece of work as one Ray task.

    A process talks to one Ray cluster: the first backend that needs Ray connects (or starts a local one), and later
    ones reuse that connection.

    Args:
        address: a running cluster (``"ray://host:10001"``, ``"host:6379"`` or ``"auto"``); ``None`` starts a local
            one (``num_cpus`` CPUs, no dashboard).
        cpus_per_task: CPUs each task asks for; it also runs with that many torch threads.
        gpus_per_task: GPUs each task asks for; ``None``: 1 when the cluster has GPUs, else 0.
        num_cpus: CPUs of a local Ray started here (``None``: all of this machine's).
    """

    address: str | None = None
    cpus_per_task: int = 1
    gpus_per_task: float | None = None
    num_cpus: int | None = None

    in_process = False

    def __post_init__(self) -> None:
        if self.cpus_per_task < 1:
            raise TanasError(f"cpus_per_task must be >= 1, got {self.cpus_per_task}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise TanasError(f"gpus_per_task must be >= 0, got {self.gpus_per_task}")

    def worker_device(self, device: str) -> str:
        """A Ray task picks its own node's device (``"auto"``) unless one was named."""
        return device

    def training(self, workers: int, device: str) -> RayBackend:
        """Every network is one Ray task (``workers`` is a local-backend setting)."""
        return self

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise TanasError("the Ray backend needs the `ray` package: pip install 'ray>=2.40,<3' "
                             "(or use the local backend)") from None
        with _INIT_LOCK:  # two app jobs may start at once
            if not ray.is_initialized():
                self._connect(ray)
        return ray

    def _connect(self, ray) -> None:
        if self.address is None:
            use_private_cluster_environment()
        else:
            _probe(self.address)
        options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                       runtime_env={"py_modules": [_PACKAGE], "env_vars": _passed_environment()})
        try:
            if self.address is None:
                start_local_ray(ray, num_cpus=self.num_cpus, **options)
            else:
                ray.init(address=self.address, **options)
        except TanasError:  # already says what went wrong (a local start that kept timing out)
            raise
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise TanasError(f"cannot connect to the Ray cluster at {self.address!r}: {error}. Check the address "
                             "(`ray status` on the head node), or leave it empty to start a local Ray") from None

    def _task_options(self, ray) -> dict:
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        options = dict(num_cpus=self.cpus_per_task, num_gpus=gpus)
        if not (ray.get_runtime_context().runtime_env or {}).get("py_modules"):
            # Ray was initialised by someone else (a notebook, the tests), so the library was not shipped with the
            # job: point this machine's workers at it (a remote cluster must have it installed, or be initialised
            # with runtime_env={"py_modules": [path of tanas_core]}).
            options["runtime_env"] = {"env_vars": dict(_passed_environment(),
                                                       PYTHONPATH=str(Path(_PACKAGE).parent))}
        return options

    def put(self, value: Any) -> Any:
        """Store ``value`` once in the cluster's object store; pass the handle inside ``items`` to many tasks."""
        return self._ray().put(value)

    def map(self, function: Callable, items: Sequence[tuple], *,
            check: Callable[[], None] | None = None) -> Iterator[tuple[int, Any]]:
        """Submit one task per item and yield ``(index, result)`` in the order tasks finish. Handles from ``put``
        inside an item arrive as their values. A task's exception is raised here as itself (``ValueError`` stays a
        ``ValueError``); ``check()`` (run every second; it raises to stop) cancels the tasks still pending."""
        items = list(items)
        if not items:  # nothing to run: no need to start or reach Ray
            return
        ray = self._ray()
        remote = ray.remote(_run_task).options(**self._task_options(ray))
        pending = {remote.remote(function, self.cpus_per_task, *item): index for index, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if check is not None:
                    check()
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:
                        cause = getattr(error, "cause", None)  # the task's own exception, without Ray's wrapping
                        raise (cause if isinstance(cause, Exception) else error) from None
                    yield index, result
        finally:
            for ref in pending:  # stopped, failed, or the caller stopped reading
                ray.cancel(ref, force=True)

    def describe(self) -> str:
        return f"ray ({self.address or 'local cluster'}, {self.cpus_per_task} CPU per task)"


def _probe(address: str) -> None:
    """Fail fast on an address nothing listens at (Ray itself retries for minutes)."""
    if address == "auto":  # a cluster started on this machine with `ray start`; Ray finds it
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TanasError(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise TanasError(f"cannot connect to the Ray cluster at {address!r}: nothing answers at {host}:{port} "
                         f"({error.strerror or error}). Check the address (`ray status` on the head node), or leave "
                         "it empty to start a local Ray") from None


_PACKAGE = str(Path(__file__).resolve().parents[1])  # tanas_core, shipped whole to Ray workers
_INIT_LOCK = threading.Lock()


def _passed_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in ("TANAS_DATA_DIR", "TANAS_HOME") if name in os.environ}


def _run_task(function: Callable, threads: int, *args):
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return function(*args)
