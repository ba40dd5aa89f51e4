"""The zoo: the dictionary of learned tasks, one trained epsilon-approximation network per (task, architecture, seed).

A zoo network is identified by a key that hashes everything that decides its weights (task definition, input
spec, architecture, preset, seed), so asking again for the same configuration reuses the stored network, and
changing any of them trains a new one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .backends import Backend, LocalBackend
from .networks import ARCHITECTURES, BackboneHeadNet, build_network
from .store import ArtifactRef, CorruptArtifactError, NetworkRecord, Workspace, config_key
from .tasks import Suite, Task, get_suite, make_splits, SUITE_NAMES
from .training import Preset, TrainProgress, TrainResult, get_preset, resolve_device, train_network

CUSTOM_SUITE = "custom"


def resolve_suite(name: str, workspace: Workspace | None = None) -> Suite:
    """A built-in suite, or ``"custom"``: the custom tasks saved in ``workspace``."""
    if name == CUSTOM_SUITE:
        tasks = tuple((workspace or Workspace()).load_tasks())
        if not tasks:
            raise ValueError("the workspace has no custom tasks yet; add one (Tasks page or `tasks add`) first")
        return Suite(CUSTOM_SUITE, "Custom tasks saved in the workspace", tasks)
    return get_suite(name)


def parse_archs(text: str | Iterable[str]) -> list[str]:
    """``"vgg16,resnet18"`` or a list -> validated architecture names (``ValueError`` for unknown ones)."""
    names = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown or not names:
        raise ValueError(f"unknown architecture(s) {unknown or names}: choose from {', '.join(ARCHITECTURES)}")
    return names


def network_key(suite: Suite, task: Task, arch: str, preset: Preset, seed: int) -> str:
    """Configuration hash of a zoo network."""
    spec = suite.spec
    return config_key(dict(task=task.fingerprint(), channels=spec.channels, size=spec.size, arch=arch,
                           preset=preset.to_dict(), seed=seed))


@dataclass
class ZooEvent:
    """Progress of a zoo run: ``status`` is ``"reused"``, ``"training"``, ``"trained"`` or ``"rebuilt-corrupt"``."""

    index: int
    total: int
    suite: str
    task: str
    arch: str
    seed: int
    status: str
    progress: TrainProgress | None = None
    record: NetworkRecord | None = None
    message: str = ""


def ensure_network(workspace: Workspace, suite: Suite, task: Task, arch: str, preset: Preset, seed: int,
                   device: str = "auto", on_progress: Callable[[TrainProgress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[NetworkRecord, str]:
    """The zoo network for this configuration: reused when stored and intact, trained (and stored) otherwise.

    Returns ``(record, status)`` with status ``"reused"``, ``"trained"`` or ``"rebuilt-corrupt"`` (the stored
    checkpoint failed its sha256 check, so it was trained again and replaced).
    """
    key = network_key(suite, task, arch, preset, seed)
    existing, status = _stored_network(workspace, key)
    if existing is not None:
        return existing, status
    result = train_zoo_network(suite, task, arch, preset, seed, device, on_progress, should_stop)
    return store_network(workspace, suite, task, arch, preset, seed, result), status


def _stored_network(workspace: Workspace, key: str) -> tuple[NetworkRecord | None, str]:
    """``(record, "reused")`` when stored and intact; ``(None, "trained" | "rebuilt-corrupt")`` otherwise."""
    existing = workspace.find_network(key)
    if existing is None:
        return None, "trained"
    try:
        verify_checkpoint(workspace, existing)
        return existing, "reused"
    except CorruptArtifactError:
        return None, "rebuilt-corrupt"


def train_zoo_network(suite: Suite, task: Task, arch: str, preset: Preset, seed: int, device: str = "auto",
                      on_progress: Callable[[TrainProgress], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train one zoo network without touching any workspace (so it can run in a worker process or a Ray task);
    the model comes back on the CPU."""
    splits = make_splits(task, preset.sizes, seed, suite.spec)
    result = train_network(splits, arch, preset, seed=seed, device=device, on_progress=on_progress,
                           should_stop=should_stop)
    result.model = result.model.cpu()
    return result


def store_network(workspace: Workspace, suite: Suite, task: Task, arch: str, preset: Preset, seed: int,
                  result: TrainResult) -> NetworkRecord:
    """Write a trained network's checkpoint (safetensors) and its row; returns the row."""
    key = network_key(suite, task, arch, preset, seed)
    metadata = dict(arch=arch, config=json.dumps(result.model.config), task=task.fingerprint(), key=key)
    ref = workspace.write_tensors("networks", key, result.model.state_dict(), metadata)
    record = NetworkRecord(
        key=key, suite=suite.name, task=task.name, task_definition=json.dumps(task.to_dict()), arch=arch,
        width=float(preset.widths[arch]), in_channels=suite.spec.channels, num_classes=task.num_outputs,
        preset=preset.name, seed=seed, test_accuracy=result.test_accuracy, val_accuracy=result.val_accuracy,
        epsilon=preset.epsilon, params=result.params, seconds=result.seconds, device=result.device,
        checkpoint=ref.path, sha256=ref.sha256, history=result.history, created_at=time.time())
    workspace.record_network(record)
    return record


def verify_checkpoint(workspace: Workspace, record: NetworkRecord) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors; ``CorruptArtifactError`` (naming the fix) when missing or failing its sha256."""
    try:
        return workspace.read_tensors(ArtifactRef(record.checkpoint, record.sha256))
    except CorruptArtifactError as error:
        raise CorruptArtifactError(
            f"{error}. Fix: `python -m tanas_core zoo train --suite {record.suite} --archs {record.arch} "
            f"--seeds {record.seed + 1} --preset {record.preset}` retrains and replaces it") from None


def load_network(workspace: Workspace, record: NetworkRecord, device: str | torch.device = "cpu") -> BackboneHeadNet:
    """The trained model of ``record`` in eval mode; ``CorruptArtifactError`` when its checkpoint is damaged."""
    return model_from_state(record, verify_checkpoint(workspace, record), device)


def model_from_state(record: NetworkRecord, state: dict[str, torch.Tensor],
                     device: str | torch.device = "cpu") -> BackboneHeadNet:
    """``record``'s architecture with the weights ``state``, in eval mode; ``ValueError`` when they do not fit."""
    model = build_network(record.arch, record.num_classes, record.in_channels, record.width)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {record.checkpoint} does not fit a {record.arch} of width {record.width} "
                         f"with {record.num_classes} outputs: {str(error).splitlines()[0]}") from error
    return model.to(device).eval()


def train_zoo(workspace: Workspace, suite: Suite, archs: list[str], seeds: list[int], preset: Preset | str,
              device: str = "auto", tasks: list[str] | None = None,
              on_event: Callable[[ZooEvent], None] | None = None,
              should_stop: Callable[[], bool] | None = None, workers: int = 1,
              backend: Backend | None = None) -> list[NetworkRecord]:
    """Ensure a network for every task x architecture x seed of ``suite`` (``tasks`` restricts the tasks).

    Stored networks are reused; each newly trained one is written as soon as it is done, so an interrupted run
    keeps everything it finished. ``backend`` decides where the missing networks train (default: here, with a
    progress event per training step). ``LocalBackend(workers > 1)`` (CPU only; ``workers`` is its shorthand)
    trains that many at once in separate processes: small networks use two cores poorly, so this was 1.24x faster
    for the demo zoo on a 2-core machine. ``RayBackend`` trains each as one Ray task. With several processes or Ray,
    only finished networks are reported, and this process writes every result to the workspace.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    archs = parse_archs(archs)
    chosen = [suite.task(name) for name in tasks] if tasks else list(suite.tasks)
    if not seeds:
        raise ValueError("at least one seed is needed (--seeds K trains seeds 0..K-1)")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    backend = backend or LocalBackend(workers)
    if isinstance(backend, LocalBackend) and resolve_device(device).type != "cpu":
        backend = LocalBackend(1)  # worker processes are CPU-only; one accelerator trains one network at a time
    jobs = [(task, arch, seed) for seed in seeds for task in chosen for arch in archs]

    def emit(index, status, progress=None, record=None):
        if on_event is not None:
            task, arch, seed = jobs[index]
            on_event(ZooEvent(index, len(jobs), suite.name, task.name, arch, seed, status, progress, record))

    if not (isinstance(backend, LocalBackend) and backend.workers == 1):
        return _train_fanout(workspace, suite, jobs, preset, device, backend, emit, should_stop)
    records = []
    for index, (task, arch, seed) in enumerate(jobs):
        emit(index, "training")
        record, status = ensure_network(workspace, suite, task, arch, preset, seed, device,
                                        on_progress=lambda p: emit(index, "training", progress=p),
                                        should_stop=should_stop)
        emit(index, status, record=record)
        records.append(record)
    return records


def _train_fanout(workspace, suite, jobs, preset, device, backend, emit, should_stop) -> list[NetworkRecord]:
    """Stored networks are reused here; the missing ones train through ``backend.map`` and are stored by this
    process as each arrives."""
    records: list[NetworkRecord | None] = [None] * len(jobs)
    statuses, missing = {}, []
    for index, (task, arch, seed) in enumerate(jobs):
        record, statuses[index] = _stored_network(workspace, network_key(suite, task, arch, preset, seed))
        if record is not None:
            records[index] = record
            emit(index, "reused", record=record)
        else:
            missing.append(index)
    # Longest first (DenseNet, then ResNet, then VGG) so the last network to finish is a short one.
    cost = {"densenet121": 0, "resnet18": 1, "vgg16": 2}
    missing.sort(key=lambda i: cost.get(jobs[i][1], 3))
    work_device = "cpu" if isinstance(backend, LocalBackend) else device
    items = [(suite, task, arch, preset, seed, work_device) for task, arch, seed in (jobs[i] for i in missing)]
    for index in missing:
        emit(index, "training")
    for position, result in backend.map(train_zoo_network, items, should_stop=should_stop):
        index = missing[position]
        task, arch, seed = jobs[index]
        records[index] = store_network(workspace, suite, task, arch, preset, seed, result)
        emit(index, statuses[index], record=records[index])
    return [r for r in records if r is not None]


def zoo_table(records: list[NetworkRecord], workspace: Workspace | None = None) -> list[dict]:
    """Rows for display: task, architecture, seed, accuracies, params, seconds, device, epsilon status, integrity."""
    rows = []
    for r in records:
        row = dict(suite=r.suite, task=r.task, arch=r.arch, seed=r.seed, preset=r.preset,
                   test_accuracy=round(r.test_accuracy, 4), val_accuracy=round(r.val_accuracy, 4),
                   params=r.params, seconds=round(r.seconds, 1), device=r.device,
                   epsilon_ok=r.is_epsilon_approximation, epsilon=r.epsilon)
        if workspace is not None:
            try:
                verify_checkpoint(workspace, r)
                row["checkpoint"] = "ok"
            except CorruptArtifactError:
                row["checkpoint"] = "CORRUPT"
        rows.append(row)
    return rows


__all__ = ["CUSTOM_SUITE", "SUITE_NAMES", "ZooEvent", "ensure_network", "load_network", "model_from_state",
           "network_key", "parse_archs", "resolve_suite", "store_network", "train_zoo", "train_zoo_network",
           "verify_checkpoint", "zoo_table"]
