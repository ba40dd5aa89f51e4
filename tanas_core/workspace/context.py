"""One run context for every long operation: where it runs, where its progress goes, how it is cancelled.

The CLI, the background jobs and the tests all build a ``RunContext`` and hand it to the library
(``train_zoo(request, context)``, ``distance_matrices(request, context)``, ``run_search(request, context)``, ...)
instead of threading ``should_stop`` / ``on_progress`` / ``on_event`` callbacks through every signature.

Progress is one monotone scale per run: ``context.progress(message, fraction)`` reports a fraction of the *current
phase*, and ``context.phase(label, start, end)`` gives a child context whose [0, 1] maps onto [start, end] of its
parent, with ``label`` prefixed to its messages (``"FUSE, related space › genotype of mnist-digit6 › round 1, step
3/40"``). However phases are nested, the fraction the sink receives never goes down.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable

from tanas_core.errors import Cancelled
from tanas_core.workspace.backends import Backend, LocalBackend, make_backend
from tanas_core.workspace.fair_threads import ThreadGovernor
from tanas_core.workspace.store import Workspace

ProgressSink = Callable[[str, float], None]
EventSink = Callable[[object], None]


class _Run:
    """State shared by a context and all its phases: the sinks, the cancel predicate, the highest fraction sent."""

    def __init__(self, on_progress: ProgressSink | None, cancelled: Callable[[], bool] | None):
        self.on_progress = on_progress
        self.cancelled = cancelled
        self.fraction = 0.0
        self.lock = threading.Lock()
        self.threads = ThreadGovernor()

    def send(self, message: str, fraction: float) -> None:
        with self.lock:
            self.fraction = max(self.fraction, min(1.0, fraction))
            fraction = self.fraction
        if self.on_progress is not None:
            self.on_progress(message, fraction)


class RunContext:
    """Where and how one operation runs.

    Args:
        workspace: the store every result is read from and written to (``None`` for pure computations such as
            ``fuse`` on tensors).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (``"auto"`` picks CUDA, then MPS, then CPU).
        backend: where fan-out work runs (default: this process).
        on_progress: ``(message, fraction in [0, 1])``; the fraction never decreases over a run.
        on_event: receives typed events (``ZooEvent``) and search events (dicts) as they happen.
        cancelled: polled by ``check()``; when it returns True the run raises ``Cancelled`` at its next step.
    """

    def __init__(self, workspace: Workspace | None, device: str = "auto", backend: Backend | None = None,
                 on_progress: ProgressSink | None = None, on_event: EventSink | None = None,
                 cancelled: Callable[[], bool] | None = None):
        self.workspace = workspace
        self.device = device
        backend = backend if backend is not None else LocalBackend()
        if workspace is not None and isinstance(backend, LocalBackend) and backend.log_dir is None:
            backend = replace(backend, log_dir=workspace.root / "logs" / "workers")  # deaths and peaks stay
        self.backend = backend
        self._handlers: tuple[EventSink, ...] = (on_event,) if on_event is not None else ()
        self._run = _Run(on_progress, cancelled)
        self._start, self._end, self._label = 0.0, 1.0, ""
        self._deadline: float | None = None

    def _child(self, **changes) -> RunContext:
        child = object.__new__(RunContext)
        child.__dict__.update(self.__dict__)
        child.__dict__.update(changes)
        return child

    # ------------------------------------------------------------------------------------------ cancellation

    def is_cancelled(self) -> bool:
        """True when the run was asked to stop, or this context's deadline (``with_deadline``) has passed."""
        return self.cancel_requested() or self.deadline_passed()

    def cancel_requested(self) -> bool:
        return bool(self._run.cancelled is not None and self._run.cancelled())

    def deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def with_deadline(self, seconds: float | None) -> RunContext:
        """A context whose ``check()`` also stops the work ``seconds`` from now (``None``: no deadline); the caller
        tells a deadline from a cancel with ``deadline_passed()``."""
        if seconds is None:
            return self
        return self._child(_deadline=time.monotonic() + seconds)

    def check(self) -> None:
        """Raise ``Cancelled`` when the run was asked to stop (called between steps); between steps is also where
        torch's threads follow what the machine can give (``ThreadGovernor``)."""
        self._run.threads.adapt()
        if self.is_cancelled():
            raise Cancelled("cancelled; finished results are kept in the workspace")

    # ------------------------------------------------------------------------------------------ progress

    @property
    def label(self) -> str:
        return self._label

    def progress(self, message: str, fraction: float) -> None:
        """Report ``fraction`` in [0, 1] of this phase done, with ``message`` (prefixed by the phase labels)."""
        fraction = min(1.0, max(0.0, float(fraction)))
        overall = self._start + (self._end - self._start) * fraction
        text = f"{self._label} › {message}" if self._label and message else (self._label or message)
        self._run.send(text, overall)

    def phase(self, label: str, start: float, end: float) -> RunContext:
        """A child context for the part [start, end] (fractions of this phase) of the work, named ``label``."""
        if not 0 <= start <= end <= 1:
            raise ValueError(f"a phase must satisfy 0 <= start <= end <= 1, got {start}, {end}")
        width = self._end - self._start
        return self._child(_start=self._start + width * start, _end=self._start + width * end,
                           _label=f"{self._label} › {label}" if self._label else label)

    def step_phases(self, labels: list[str], weights: list[float] | None = None) -> list[RunContext]:
        """Consecutive phases, one per label, each as wide as its share of ``weights`` (expected costs; ``None``, or
        every weight 0: equal phases, so progress still moves through them)."""
        weights = [1.0] * len(labels) if weights is None else [float(w) for w in weights]
        if len(weights) != len(labels) or any(w < 0 for w in weights):
            raise ValueError(f"step_phases needs one non-negative weight per label, got {weights} for {labels}")
        if not any(weights):
            weights = [1.0] * len(labels)
        total = sum(weights) or 1.0
        edges = [sum(weights[:index]) / total for index in range(len(labels) + 1)]
        return [self.phase(label, edges[index], min(1.0, edges[index + 1])) for index, label in enumerate(labels)]

    @property
    def overall_fraction(self) -> float:
        """The highest fraction reported so far for the whole run."""
        return self._run.fraction

    # ------------------------------------------------------------------------------------------ events, backend

    def emit(self, event: object) -> None:
        """Hand ``event`` to every event handler of this context (and of its parents)."""
        for handler in self._handlers:
            handler(event)

    def with_events(self, handler: EventSink) -> RunContext:
        """A context that also sends its events to ``handler``."""
        return self._child(_handlers=self._handlers + (handler,))

    def with_backend(self, backend: Backend) -> RunContext:
        """The same run on another backend."""
        return self._child(backend=backend)


def quiet_context(workspace: Workspace, device: str = "auto", backend: Backend | None = None) -> RunContext:
    """A context with no progress, no events and no cancel (scripts, tests, benchmarks)."""
    return RunContext(workspace, device=device, backend=backend)


class RunSettings:
    """How a front-end wants its runs executed, as plain JSON (a job row keeps it beside the request):
    ``backend`` (``"local"`` or ``"ray"``), ``ray_address`` (``None``: a local Ray) and ``device``."""

    def __init__(self, backend: str = "local", ray_address: str | None = None, device: str = "auto"):
        self.backend, self.ray_address, self.device = backend, ray_address or None, device
        make_backend(self.backend, self.ray_address)  # TanasError for an unknown backend or a misplaced address

    def to_dict(self) -> dict:
        return dict(backend=self.backend, ray_address=self.ray_address, device=self.device)

    @classmethod
    def from_dict(cls, values: dict | None) -> RunSettings:
        values = dict(values or {})
        return cls(values.get("backend") or "local", values.get("ray_address"), values.get("device") or "auto")

    def context(self, workspace: Workspace, **sinks) -> RunContext:
        """A ``RunContext`` on ``workspace`` with these settings (``sinks``: on_progress, on_event, cancelled)."""
        return RunContext(workspace, device=self.device, backend=make_backend(self.backend, self.ray_address),
                          **sinks)
