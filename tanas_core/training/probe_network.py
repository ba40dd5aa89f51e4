"""The common probe network: Task2Vec's design (Achille et al., 2019), which the source document does not use.

TA-NAS compares ``F[b, t]`` (task ``b``'s own network on ``X_t``) with ``F[t, t]``, so every entry mixes two
networks. Task2Vec instead embeds every task with **one** network: here, per architecture and seed, a network
trained on the suite's broad task (every class of each of its datasets together, e.g. 10 digits + 10 CIFAR-10
classes for ``ld8``), whose head is refitted on each task before the Fisher is taken on that task's held-out probe
images. ``d[b, t]`` of the probe view compares ``F[P, X_b]`` with ``F[P, X_t]``: the same backbone, other data.

Within a seed every ``d[b, t]`` of this view compares two Fishers of the one probe network, so its own reference
compares other draws of a task's data under that network; a retrained probe network (same initial weights, other
data) is the other reference (``views``). Probe networks are
trained like zoo networks (``train_zoo`` with ``networks="probe"``: reused when stored, fanned out to workers) and
stored like them (safetensors, sha256), but indexed as results of kind ``probe_network``, so the zoo's tables list
tasks only.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict

import torch

from tanas_core.data.datasets import dataset_class_names
from tanas_core.data.suites import Suite
from tanas_core.data.tasks import Task, make_splits, make_task
from tanas_core.networks import build_network, count_parameters
from tanas_core.networks.devices import resolve_device
from tanas_core.training.checkpoints import PROBE_TASK, SPLITS_VERSION, data_seed, write_checkpoint
from tanas_core.training.trainer import Preset, TrainResult, evaluate, fit
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import NetworkRecord
from tanas_core.workspace.store import ArtifactRef, Workspace, config_key


def broad_tasks(suite: Suite) -> list[Task]:
    """One task per dataset of ``suite`` with every class of that dataset as an output (the probe's training
    data; their outputs are stacked in this order)."""
    return [make_task(f"{dataset}-all-classes", dataset, [[c] for c in dataset_class_names(dataset)])
            for dataset in suite.datasets]


def probe_network_key(suite: Suite, arch: str, preset: Preset, seed: int, replicate: int = 0) -> str:
    """Configuration hash of a probe network (everything that decides its weights; ``replicate`` >= 1: a retrained
    twin, same initial weights, data seed ``data_seed(seed, replicate)``)."""
    return config_key(dict(kind="probe-network", tasks=[t.fingerprint() for t in broad_tasks(suite)],
                           spec=vars(suite.spec), arch=arch, preset=preset.to_dict(), seed=seed, replicate=replicate,
                           splits=SPLITS_VERSION))


def broad_data(suite: Suite, preset: Preset, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (images [N, C, H, W], labels [N])}`` of the broad task: each dataset's all-class splits at the
    preset's sizes (data seed ``seed``; probe images excluded, as for every task), labels offset per dataset."""
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    offset = 0
    for task in broad_tasks(suite):
        splits = make_splits(task, preset.sizes, seed, suite.spec)
        for split, items in parts.items():
            images, labels = splits.tensors(split)
            items.append((images, labels + offset))
        offset += task.num_outputs
    return {split: (torch.cat([x for x, _ in items]), torch.cat([y for _, y in items]))
            for split, items in parts.items()}


def train_probe_network(suite: Suite, arch: str, preset: Preset, seed: int, device: str = "auto",
                        context: RunContext | None = None, replicate: int = 0) -> TrainResult:
    """Train the probe network of ``(arch, seed)``: initial weights from ``seed`` (the same backbone draw as every
    zoo network of that seed), data and batch order from ``data_seed(seed, replicate)`` (``replicate`` 0: ``seed``
    itself; >= 1: a retrained twin)."""
    started = time.perf_counter()
    data = broad_data(suite, preset, data_seed(seed, replicate))
    torch.manual_seed(seed)
    model = build_network(arch, sum(t.num_outputs for t in broad_tasks(suite)), suite.spec.channels,
                          preset.widths[arch])
    history = fit(model, *data["train"], preset, preset.epochs_for(arch), data_seed(seed, replicate), device, context,
                  name=f"probe network of {suite.name}")
    check = context.check if context is not None else None
    val_accuracy = evaluate(model, *data["val"], device=device, check=check)
    test_accuracy = evaluate(model, *data["test"], device=device, check=check)
    return TrainResult(model.cpu().eval(), test_accuracy, val_accuracy, count_parameters(model),
                       time.perf_counter() - started, str(resolve_device(device)), history)


def find_probe_network(workspace: Workspace, key: str) -> NetworkRecord | None:
    """The stored record of the probe network of ``key`` (its checkpoint unchecked), or ``None``: the probe
    networks' ``Workspace.find_network``."""
    stored = workspace.get_result("probe_network", key)
    return NetworkRecord(**stored[0]) if stored is not None else None


def list_probe_networks(workspace: Workspace, suite: str | None = None,
                        preset: str | None = None) -> list[NetworkRecord]:
    """The stored probe networks (of ``suite`` and ``preset``) by suite, preset, architecture, seed and replicate:
    the probe networks' ``Workspace.list_networks``."""
    records = [NetworkRecord(**payload) for payload in workspace.list_results("probe_network")]
    return sorted((r for r in records if suite in (None, r.suite) and preset in (None, r.preset)),
                  key=lambda r: (r.suite, r.preset, r.arch, r.seed, r.replicate))


def store_probe_network(workspace: Workspace, suite: Suite, arch: str, preset: Preset, seed: int,
                        result: TrainResult, replicate: int = 0) -> NetworkRecord:
    """Write a trained probe network's checkpoint and index it as a ``probe_network`` result; returns its record."""
    key = probe_network_key(suite, arch, preset, seed, replicate)
    definition = json.dumps([t.to_dict() for t in broad_tasks(suite)])
    record = write_checkpoint(workspace, key, suite, PROBE_TASK, definition, arch, preset, seed, result, replicate)
    workspace.put_result("probe_network", key, asdict(record), ArtifactRef(record.checkpoint, record.sha256))
    return record
