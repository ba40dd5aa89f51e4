"""The zoo: the dictionary of learned tasks, one trained epsilon-approximation network per (task, architecture, seed).

A zoo network is identified by a key that hashes everything that decides its weights (task definition, input
spec, architecture, preset, seed), so asking again for the same configuration reuses the stored network, and
changing any of them trains a new one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tanas_core.data.suites import Suite, resolve_suite
from tanas_core.data.tasks import Task, make_splits
from tanas_core.requests import ZooRequest
from tanas_core.training.checkpoints import (
    PROBE_TASK,
    SPLITS_VERSION,
    data_seed,
    intact,
    verify_checkpoint,
    write_checkpoint,
)
from tanas_core.training.probe_network import (
    find_probe_network,
    probe_network_key,
    store_probe_network,
    train_probe_network,
)
from tanas_core.training.trainer import Preset, TrainResult, get_preset, train_network
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.store import CorruptArtifactError, NetworkRecord, Workspace, config_key


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


@dataclass(frozen=True)
class ZooJob:
    """One network of a zoo run: ``task``'s network, or (``task`` None) the suite's probe network (``probe_network``),
    for ``arch``, initial weights ``seed`` and data seed ``data_seed(seed, replicate)``."""

    task: Task | None
    arch: str
    seed: int
    replicate: int = 0

    @property
    def task_name(self) -> str:
        """The task name its record carries."""
        return self.task.name if self.task is not None else PROBE_TASK

    @property
    def name(self) -> str:
        """``task / arch / seed s[ / replicate r]``: progress lines and worker reports name a job by it."""
        return f"{self.task_name} / {self.arch} / seed {self.seed}" + (f" / replicate {self.replicate}"
                                                                        if self.replicate else "")

    def stored(self, workspace: Workspace, suite: Suite, preset: Preset) -> tuple[NetworkRecord | None, str]:
        """``(record, "reused")`` when stored and intact; ``(None, "trained" | "rebuilt-corrupt")`` otherwise."""
        if self.task is None:
            found = find_probe_network(workspace, probe_network_key(suite, self.arch, preset, self.seed,
                                                                    self.replicate))
        else:
            found = workspace.find_network(network_key(suite, self.task, self.arch, preset, self.seed, self.replicate))
        return intact(workspace, found)

    def store(self, workspace: Workspace, suite: Suite, preset: Preset, result: TrainResult) -> NetworkRecord:
        """Write the trained network and index it (a zoo row, or a ``probe_network`` result)."""
        if self.task is None:
            return store_probe_network(workspace, suite, self.arch, preset, self.seed, result, self.replicate)
        return store_network(workspace, suite, self.task, self.arch, preset, self.seed, result, self.replicate)


def train_zoo_job(suite: Suite, job: ZooJob, preset: Preset, device: str = "auto",
                  context: RunContext | None = None) -> TrainResult:
    """Train ``job``'s network without touching any workspace (so it can run in a worker process or a Ray task);
    the model comes back on the CPU."""
    if job.task is None:
        return train_probe_network(suite, job.arch, preset, job.seed, device, context, job.replicate)
    return train_zoo_network(suite, job.task, job.arch, preset, job.seed, device, context, job.replicate)


def ensure_network(context: RunContext, suite: Suite, task: Task, arch: str, preset: Preset,
                   seed: int, replicate: int = 0) -> tuple[NetworkRecord, str]:
    """The zoo network for this configuration: reused when stored and intact, trained here (and stored) otherwise.

    Returns ``(record, status)`` with status ``"reused"``, ``"trained"`` or ``"rebuilt-corrupt"`` (the stored
    checkpoint failed its sha256 check, so it was trained again and replaced).
    """
    return _ensure(context, suite, ZooJob(task, arch, seed, replicate), preset)


def _ensure(context: RunContext, suite: Suite, job: ZooJob, preset: Preset) -> tuple[NetworkRecord, str]:
    existing, status = job.stored(context.workspace, suite, preset)
    if existing is not None:
        return existing, status
    result = train_zoo_job(suite, job, preset, context.device, context)
    return job.store(context.workspace, suite, preset, result), status


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


def zoo_jobs(request: ZooRequest, suite: Suite) -> list[ZooJob]:
    """The networks ``request`` asks for, in (seed, task, architecture, replicate) order; the suite's probe networks
    (``request.networks`` "probe" or "both") come after each seed's task networks."""
    tasks = [suite.task(name) for name in request.tasks] if request.tasks else list(suite.tasks)
    kinds = dict(tasks=tasks, probe=[None], both=tasks + [None])[request.networks]
    return [ZooJob(task, arch, seed, replicate) for seed in range(request.seeds) for task in kinds
            for arch in request.archs for replicate in range(request.replicates + 1)]


def train_zoo(request: ZooRequest, context: RunContext) -> list[NetworkRecord]:
    """Ensure a network for every task x architecture x seed of ``request.suite`` (``request.tasks`` restricts the
    tasks; ``request.networks`` adds or picks the suite's probe networks), and ``request.replicates``
    same-initialisation replicates of each; returns their records in ``zoo_jobs`` order.

    Stored networks are reused; each newly trained one is written as soon as it is done, so an interrupted run
    keeps everything it finished. The context's backend decides where the missing networks train: here (per-step
    progress), in ``request.workers`` local processes (CPU only: small networks use several cores poorly, so
    processes side by side train a zoo faster; ``bench zoo`` measures it), or one Ray task each; then only finished
    networks are reported, and this process writes every result. Every network is a ``ZooEvent`` to ``context.emit``.
    """
    request.validate(context.workspace)
    suite = resolve_suite(request.suite, context.workspace)
    preset = get_preset(request.preset)
    jobs = zoo_jobs(request, suite)
    backend = context.backend.training(request.workers, context.device)

    def emit(index, status, record=None):
        job = jobs[index]
        context.emit(ZooEvent(index, len(jobs), suite.name, job.task_name, job.arch, job.seed, status, record,
                              job.replicate))

    if not backend.in_process:
        return _train_fanout(context.with_backend(backend), suite, jobs, preset, emit)
    records = []
    for index, job in enumerate(jobs):
        emit(index, "training")
        step = context.phase(job.name, index / len(jobs), (index + 1) / len(jobs))
        record, status = _ensure(step, suite, job, preset)
        step.progress(status, 1.0)
        emit(index, status, record=record)
        records.append(record)
    return records


def _train_fanout(context: RunContext, suite: Suite, jobs: list[ZooJob], preset: Preset,
                  emit) -> list[NetworkRecord]:
    """Stored networks are reused here; the missing ones train through ``context.backend.map`` and are stored by
    this process as each arrives."""
    workspace, backend = context.workspace, context.backend
    records: list[NetworkRecord | None] = [None] * len(jobs)
    statuses, missing = {}, []
    for index, job in enumerate(jobs):
        record, statuses[index] = job.stored(workspace, suite, preset)
        if record is not None:
            records[index] = record
            emit(index, "reused", record=record)
        else:
            missing.append(index)
    # Longest first (DenseNet, then ResNet, then VGG; a probe network before a task's) so the last to finish is short.
    cost = {"densenet121": 0, "resnet18": 1, "vgg16": 2}
    missing.sort(key=lambda i: (cost.get(jobs[i].arch, 3), jobs[i].task is not None))
    work_device = backend.worker_device(context.device)
    items = [(suite, jobs[i], preset, work_device) for i in missing]
    for index in missing:
        emit(index, "training")
    for done, (position, result) in enumerate(backend.map(train_zoo_job, items, check=context.check), 1):
        index = missing[position]
        records[index] = jobs[index].store(workspace, suite, preset, result)
        context.progress(f"{done}/{len(missing)} trained: {jobs[index].name}", done / len(missing))
        emit(index, statuses[index], record=records[index])
    return [r for r in records if r is not None]


def zoo_table(records: list[NetworkRecord], workspace: Workspace | None = None) -> list[dict]:
    """Rows for display: task, architecture, seed, replicate, accuracies, params, seconds, device, epsilon status,
    integrity."""
    rows = []
    for r in records:
        row = dict(suite=r.suite, task=r.task, arch=r.arch, seed=r.seed, replicate=r.replicate, preset=r.preset,
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
