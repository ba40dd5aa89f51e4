"""Where trained networks live: every network (a task's zoo network or a suite's probe network) is a safetensors
checkpoint with its sha256, described by a ``NetworkRecord``; this module writes, checks and loads them, and holds the
data seed of same-initialisation replicates that both kinds share.
"""
from __future__ import annotations

import json
import time

import torch

from tanas_core.data.suites import Suite
from tanas_core.errors import TanasError
from tanas_core.networks import BackboneHeadNet, build_network
from tanas_core.training.trainer import Preset, TrainResult
from tanas_core.workspace.store import ArtifactRef, CorruptArtifactError, NetworkRecord, Workspace

PROBE_TASK = "probe: every class"  # the task name of a suite's probe network (``probe_network``)

# Training pools without the held-out probe images (``tasks.probe_mask``): networks trained before had other data.
SPLITS_VERSION = "probe-v2"  # v2: 20 % probe share (v1: 10 %)
REPLICATE_SEED_STRIDE = 1000


def data_seed(seed: int, replicate: int = 0) -> int:
    """The data seed (training subsample and batch order) of a zoo network: ``seed`` itself, or for replicate
    ``r >= 1`` of seed ``s``, ``s + 1000 r``: the same initial weights (``seed``), other data."""
    return seed + REPLICATE_SEED_STRIDE * replicate


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
            f"--seeds {record.seed + 1} --preset {record.preset}"
            + (" --networks probe" if record.task == PROBE_TASK else "")
            + (f" --replicates {record.replicate}" if record.replicate else "")
            + "` retrains and replaces it") from None


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
