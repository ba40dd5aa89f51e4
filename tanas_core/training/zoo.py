"""The zoo: the dictionary of learned tasks, one trained epsilon-approximation network per (task, architecture, seed).

A zoo network is identified by a key that hashes everything that decides its weights (task definition, input
spec, architecture, preset, seed), so asking again for the same configuration reuses the stored network, and
changing any of them trains a new one.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from tanas_core.data.suites import CUSTOM_SUITE, SUITE_NAMES, Suite, resolve_suite
from tanas_core.data.tasks import Task, make_splits
from tanas_core.errors import TanasError
from tanas_core.networks import BackboneHeadNet, build_network
from tanas_core.requests import ZooRequest, parse_archs
from tanas_core.training.trainer import Preset, TrainResult, get_preset, train_network
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.store import ArtifactRef, CorruptArtifactError, NetworkRecord, Workspace, config_key

# Training pools without the held-out probe images (``tasks.probe_mask``): networks trained before had other data.
SPLITS_VERSION = "probe-v2"  # v2: 20 % probe share (v1: 10 %)
REPLICATE_SEED_STRIDE = 1000


def data_seed(seed: int, replicate: int = 0) -> int:
    """The data seed (training subsample and batch order) of a zoo network: ``seed`` itself, or for replicate
    ``r >= 1`` of seed ``s``, ``s + 1000 r``: the same initial weights (``seed``), other data."""
    return seed + REPLICATE_SEED_STRIDE * replicate


def network_key(suite: Suite, task: Task, arch: str, preset: Preset, seed: int, replicate: int = 0) -> str:
    """Configuration hash of a zoo network (``replicate`` > 0: a same-initialisation replicate)."""
    spec = suite.spec
    payload = dict(task=task.fingerprint(), channels=spec.channels, size=spec.size, arch=arch,
                   preset=preset.to_dict(), seed=seed, splits=SPLITS_VERSION)
    if replicate:
        payload["replicate"] = replicate
    return config_key(payload)


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
    record: NetworkRecord | None = None
    replicate: int = 0


def ensure_network(context: RunContext, suite: Suite, task: Task, arch: str, preset: Preset,
                   seed: int, replicate: int = 0) -> tuple[NetworkRecord, str]:
    """The zoo network for this configuration: reused when stored and intact, trained here (and stored) otherwise.

    Returns ``(record, status)`` with status ``"reused"``, ``"trained"`` or ``"rebuilt-corrupt"`` (the stored
    checkpoint failed its sha256 check, so it was trained again and replaced).
    """
    workspace = context.workspace
    key = network_key(suite, task, arch, preset, seed, replicate)
    existing, status = _stored_network(workspace, key)
    if existing is not None:
        return existing, status
    result = train_zoo_network(suite, task, arch, preset, seed, context.device, context, replicate)
    return store_network(workspace, suite, task, arch, preset, seed, result, replicate), status


def _stored_network(workspace: Workspace, key: str) -> tuple[NetworkRecord | None, str]:
    """``(record, "reused")`` when stored and intact; ``(None, "trained" | "rebuilt-corrupt")`` otherwise."""
    return intact(workspace, workspace.find_network(key))


def intact(workspace: Workspace, existing: NetworkRecord | None) -> tuple[NetworkRecord | None, str]:
    """``(existing, "reused")`` when its checkpoint passes its sha256 check; ``(None, "trained")`` when there is
    none, ``(None, "rebuilt-corrupt")`` when it is damaged (the caller trains it again)."""
    if existing is None:
        return None, "trained"
    try:
        verify_checkpoint(workspace, existing)
        return existing, "reused"
    except CorruptArtifactError:
        return None, "rebuilt-corrupt"


def train_zoo_network(suite: Suite, task: Task, arch: str, preset: Preset, seed: int, device: str = "auto",
                      context: RunContext | None = None, replicate: int = 0) -> TrainResult:
    """Train one zoo network without touching any workspace (so it can run in a worker process or a Ray task, with
    no context); the model comes back on the CPU. Initial weights from ``seed``, data from ``data_seed``."""
    splits = make_splits(task, preset.sizes, data_seed(seed, replicate), suite.spec)
    result = train_network(splits, arch, preset, seed=seed, device=device, context=context,
                           batch_seed=data_seed(seed, replicate))
    result.model = result.model.cpu()
    return result


def store_network(workspace: Workspace, suite: Suite, task: Task, arch: str, preset: Preset, seed: int,
                  result: TrainResult, replicate: int = 0) -> NetworkRecord:
    """Write a trained network's checkpoint (safetensors) and its row; returns the row."""
    key = network_key(suite, task, arch, preset, seed, replicate)
    record = write_checkpoint(workspace, key, suite, task.name, json.dumps(task.to_dict()), arch, preset, seed,
                              result, replicate, task=task.fingerprint())
    workspace.record_network(record)
    return record


def write_checkpoint(workspace: Workspace, key: str, suite: Suite, task_name: str, task_definition: str, arch: str,
                     preset: Preset, seed: int, result: TrainResult, replicate: int = 0,
                     **metadata: str) -> NetworkRecord:
    """Write ``result``'s weights as the safetensors checkpoint of ``key`` and return its ``NetworkRecord`` (not
    indexed: the caller stores it, as a zoo row or as another result)."""
    metadata = dict(arch=arch, config=json.dumps(result.model.config), key=key, **metadata)
    ref = workspace.write_tensors("networks", key, result.model.state_dict(), metadata)
    return NetworkRecord(
        key=key, suite=suite.name, task=task_name, task_definition=task_definition, arch=arch,
        width=float(preset.widths[arch]), in_channels=suite.spec.channels,
        num_classes=result.model.head.out_features, preset=preset.name, seed=seed,
        test_accuracy=result.test_accuracy, val_accuracy=result.val_accuracy, epsilon=preset.epsilon,
        params=result.params, seconds=result.seconds, device=result.device, checkpoint=ref.path, sha256=ref.sha256,
        history=result.history, created_at=time.time(), replicate=replicate, stopped=result.stopped)


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
        raise TanasError(f"checkpoint {record.checkpoint} does not fit a {record.arch} of width {record.width} "
                         f"with {record.num_classes} outputs: {str(error).splitlines()[0]}") from error
    return model.to(device).eval()


def train_zoo(request: ZooRequest, context: RunContext) -> list[NetworkRecord]:
    """Ensure a network for every task x architecture x seed of ``request.suite`` (``request.tasks`` restricts the
    tasks), and ``request.replicates`` same-initialisation replicates of each; returns their records in (seed,
    task, architecture, replicate) order.

    Stored networks are reused; each newly trained one is written as soon as it is done, so an interrupted run
    keeps everything it finished. The context's backend decides where the missing networks train: here (per-step
    progress), in ``request.workers`` local processes (CPU only: small networks use several cores poorly, so
    processes side by side train a zoo faster; ``bench zoo`` measures it), or one Ray task each; then only finished
    networks are reported, and this process writes every result. Every network is a ``ZooEvent`` to ``context.emit``.
    """
    request.validate(context.workspace)
    suite = resolve_suite(request.suite, context.workspace)
    preset = get_preset(request.preset)
    chosen = [suite.task(name) for name in request.tasks] if request.tasks else list(suite.tasks)
    jobs = [(task, arch, seed, replicate) for seed in range(request.seeds) for task in chosen
            for arch in request.archs for replicate in range(request.replicates + 1)]
    backend = context.backend.training(request.workers, context.device)

    def emit(index, status, record=None):
        task, arch, seed, replicate = jobs[index]
        context.emit(ZooEvent(index, len(jobs), suite.name, task.name, arch, seed, status, record, replicate))

    if not backend.in_process:
        return _train_fanout(context.with_backend(backend), suite, jobs, preset, emit)
    records = []
    for index, (task, arch, seed, replicate) in enumerate(jobs):
        emit(index, "training")
        step = context.phase(_label(task, arch, seed, replicate), index / len(jobs), (index + 1) / len(jobs))
        record, status = ensure_network(step, suite, task, arch, preset, seed, replicate)
        step.progress(status, 1.0)
        emit(index, status, record=record)
        records.append(record)
    return records


def _label(task: Task, arch: str, seed: int, replicate: int) -> str:
    return f"{task.name} / {arch} / seed {seed}" + (f" / replicate {replicate}" if replicate else "")


def _train_fanout(context: RunContext, suite, jobs, preset, emit) -> list[NetworkRecord]:
    """Stored networks are reused here; the missing ones train through ``context.backend.map`` and are stored by
    this process as each arrives."""
    workspace, backend = context.workspace, context.backend
    records: list[NetworkRecord | None] = [None] * len(jobs)
    statuses, missing = {}, []
    for index, (task, arch, seed, replicate) in enumerate(jobs):
        record, statuses[index] = _stored_network(workspace, network_key(suite, task, arch, preset, seed, replicate))
        if record is not None:
            records[index] = record
            emit(index, "reused", record=record)
        else:
            missing.append(index)
    # Longest first (DenseNet, then ResNet, then VGG) so the last network to finish is a short one.
    cost = {"densenet121": 0, "resnet18": 1, "vgg16": 2}
    missing.sort(key=lambda i: cost.get(jobs[i][1], 3))
    work_device = backend.worker_device(context.device)
    items = [(suite, task, arch, preset, seed, work_device, None, replicate)
             for task, arch, seed, replicate in (jobs[i] for i in missing)]
    for index in missing:
        emit(index, "training")
    for done, (position, result) in enumerate(backend.map(train_zoo_network, items, check=context.check), 1):
        index = missing[position]
        task, arch, seed, replicate = jobs[index]
        records[index] = store_network(workspace, suite, task, arch, preset, seed, result, replicate)
        context.progress(f"{done}/{len(missing)} trained: {_label(task, arch, seed, replicate)}", done / len(missing))
        emit(index, statuses[index], record=records[index])
    return [r for r in records if r is not None]


def zoo_table(records: list[NetworkRecord], workspace: Workspace | None = None) -> list[dict]:
    """Rows for display: task, architecture, seed, accuracies, params, seconds, device, epsilon status, integrity."""
    rows = []
    for r in records:
        row = dict(suite=r.suite, task=r.task, arch=r.arch, seed=r.seed, preset=r.preset,
                   test_accuracy=round(r.test_accuracy, 4), val_accuracy=round(r.val_accuracy, 4),
                   params=r.params, seconds=round(r.seconds, 1), device=r.device,
                   epsilon_ok=r.is_epsilon_approximation, epsilon=r.epsilon, stopped=r.stopped)
        if workspace is not None:
            try:
                verify_checkpoint(workspace, r)
                row["checkpoint"] = "ok"
            except CorruptArtifactError:
                row["checkpoint"] = "CORRUPT"
        rows.append(row)
    return rows


def epsilon_summary(records: list[NetworkRecord], datasets: dict[str, str]) -> dict:
    """Which networks are epsilon-approximations of their task (test accuracy >= 1 - epsilon, the source's
    precondition): ``{networks, met, by_dataset: {dataset: {networks, met, epsilon, min_accuracy,
    mean_accuracy, stopped: {why: count}}}}``; ``stopped`` counts why the epsilon policy ended training (epsilon
    reached, plateau, budget; empty for a fixed budget)."""
    by_dataset: dict[str, list[NetworkRecord]] = {}
    for record in records:
        by_dataset.setdefault(datasets.get(record.task, "?"), []).append(record)
    return dict(networks=len(records), met=sum(r.is_epsilon_approximation for r in records),
                by_dataset={name: dict(networks=len(group), met=sum(r.is_epsilon_approximation for r in group),
                                       epsilon=max(r.epsilon for r in group),
                                       min_accuracy=min(r.test_accuracy for r in group),
                                       mean_accuracy=float(np.mean([r.test_accuracy for r in group])),
                                       stopped=dict(Counter(r.stopped.split(":")[0] for r in group if r.stopped)))
                            for name, group in sorted(by_dataset.items())})


__all__ = ["CUSTOM_SUITE", "SUITE_NAMES", "ZooEvent", "ensure_network", "epsilon_summary", "intact", "load_network",
           "model_from_state", "network_key", "parse_archs", "resolve_suite", "store_network", "train_zoo",
           "train_zoo_network", "verify_checkpoint", "write_checkpoint", "zoo_table"]
