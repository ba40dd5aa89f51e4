"""``F[b, t]``: the Fisher of baseline network ``N_b`` on target data ``X_t``, computed where the backend runs work
and cached in the workspace.

``N_b``'s head predicts task ``b``'s classes, so by default (``head="refit"``) a fresh linear head is fitted on
``X_t``'s training images with ``N_b``'s backbone frozen, and the empirical Fisher uses task ``t``'s labels;
``head="own"`` keeps ``N_b``'s head and uses the model Fisher (labels drawn from its own softmax). The head is fitted
on the target's seed-0 training split; the Fisher averages over its held-out probe images (``probe``), the same for
every network seed.

A **data draw** ``r >= 1`` of the target (``draw``) is another sample of its data for the same network: the head
fitted on the training split of data seed ``data_seed(0, r)``, the Fisher on draw ``r`` of its held-out images
(``probe``: test images). The common-probe view's reference compares draws, because its ``d[b, t]`` compares two
Fishers of one network on other data.
"""
from __future__ import annotations

import collections
import copy
import functools
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from tanas_core.data.probe_images import probe_count
from tanas_core.data.suites import Suite
from tanas_core.data.tasks import Task, make_probe, make_splits
from tanas_core.errors import TanasError
from tanas_core.fisher.matrices import FisherFactor, diagonal_fisher, fisher_factor, select_parameters
from tanas_core.networks import BackboneHeadNet, build_network
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import FisherConfig
from tanas_core.training.checkpoints import data_seed, model_from_state, verify_checkpoint
from tanas_core.training.trainer import Preset
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.store import NetworkRecord, Workspace, config_key


@torch.no_grad()
def frozen_features(model: BackboneHeadNet, images: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    """``model``'s backbone features ``[N, feature_dim]`` of ``images [N, C, H, W]``, ``batch`` images at a time on
    ``device`` (eval-mode features do not depend on the batch)."""
    return torch.cat([model.features(images[i:i + batch].to(device)) for i in range(0, len(images), batch)])


def refit_head(model: BackboneHeadNet, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
               weight_decay: float, steps: int = 100) -> BackboneHeadNet:
    """A copy of ``model`` with a new linear head for ``num_classes`` fitted on frozen backbone ``features [N, d]``,
    with ``weight_decay`` times the squared head weights added to the mean cross-entropy
    (``FisherConfig.head_weight_decay``).

    Full-batch L-BFGS on the L2-regularised cross-entropy, on the CPU in float64 (``HEAD_FIT``), whatever the model's
    device: a float32 loss cannot resolve the optimum closer than ~1e-4 (L-BFGS ends on an unchanged loss), so
    features that differ by float32 rounding would give heads, and Fishers, that differ by up to ~1e-3; in float64 the
    fit ends on its gradient tolerance and the head follows the features smoothly. The head is returned in float32
    on the model's device.
    """
    torch.manual_seed(0)
    x = features.detach().to("cpu", torch.float64)
    y = labels.detach().to("cpu")
    head = torch.nn.Linear(x.shape[1], num_classes).to(torch.float64)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    refitted = copy.deepcopy(model)
    refitted.head = head.to(features.device, torch.float32).requires_grad_(True)
    return refitted.eval()


# What the refitted head's fit adds to the store keys of the results it shapes (Fishers, linear transfer): heads
# fitted in float32 before it existed.
HEAD_FIT = dict(head_fit="float64")


@dataclass(frozen=True)
class Kernels:
    """How ``compute_target_fisher`` lays its arithmetic out on the machine. The result does not depend on it beyond
    float32 rounding (tested); ``bench pair`` times two settings side by side.

    ``feature_batch``: images per forward pass of the head images' features. Eval-mode features are bit-identical for
    any batch, and on a CPU the activations of 64 demo images stay in cache where 256 do not.
    ``channels_last``: the Fisher's forward and backward passes in channels-last layout on a CPU, where oneDNN's
    convolutions otherwise reorder every activation to and from their blocked layout (other devices keep the default).
    ``features_channels_last``: the head images' features in channels-last layout on a CPU too (DenseNet's many
    thin layers gain most, ``bench pair``). Their float32 rounding moves the head fitted on them by ~1e-6 relative
    (``refit_head`` fits in float64).
    """

    feature_batch: int = 64
    channels_last: bool = True
    features_channels_last: bool = True


KERNELS = Kernels()


def _fisher_key(record: NetworkRecord, suite: Suite, target: Task, preset: Preset, representation: str,
                config: FisherConfig, draw: int = 0) -> str:
    draws = dict(draw=draw) if draw else {}  # draw 0 keeps the key it had before draws existed
    return config_key(dict(network=record.key, sha=record.sha256, target=target.fingerprint(), spec=vars(suite.spec),
                           sizes=vars(preset.sizes), representation=representation, config=config.identity(),
                           inputs="probe", **HEAD_FIT, **draws))


def stored_fisher(workspace: Workspace, key: str) -> torch.Tensor | FisherFactor | None:
    """The stored ``F[b, t]`` of ``key`` (a diagonal tensor or a ``FisherFactor``), or ``None``."""
    stored = workspace.get_result("fisher", key)
    if stored is None:
        return None
    payload, ref = stored
    if payload["representation"] == "diagonal":  # per-piece diagonals: their size-weighted mean is the Fisher
        chunks, weights = _read_chunks(workspace, payload, ref)
        return (chunks.double() * weights[:, None]).sum(0).to(chunks.dtype)
    matrix = workspace.read_tensors(ref)["fisher"]
    if payload["sketch_seed"] is None:
        return matrix
    return FisherFactor(matrix, payload["n"], payload["sketch_seed"])


def compute_target_fisher(state: dict[str, torch.Tensor], record: NetworkRecord, suite: Suite, target: Task,
                          preset: Preset, representation: str, config: FisherConfig, device: str = "auto",
                          draw: int = 0, kernels: Kernels = KERNELS) -> tuple[torch.Tensor | FisherFactor, float]:
    """``(F[b, t], seconds)`` from N_b's weights ``state`` without touching any workspace (so it can run in a Ray
    task); the result is on the CPU. The head is refitted on ``X_t``'s training images; the Fisher averages over
    ``X_t``'s held-out probe images (``tasks.make_probe``), which no zoo network trained on and no head was fitted
    on, so a network's fit to its own training images cannot pin the Fisher near zero. ``draw`` >= 1: another
    draw of ``X_t`` (head images from data seed ``data_seed(0, draw)``, Fisher images from the test images).
    ``kernels``: the machine layout (``Kernels``), not part of the result's identity."""
    started = time.perf_counter()
    target_device = resolve_device(device)
    model = model_from_state(record, state, target_device)
    inputs, probe_labels = _probe_examples(target, suite.spec, probe_images_used(target, config), draw)
    if config.head == "refit":
        images, labels = _target_examples(target, preset.sizes, suite.spec, config.head_samples, data_seed(0, draw))
        features = frozen_features(*_layout(model, images, kernels.features_channels_last, target_device),
                                   target_device, kernels.feature_batch)
        model = refit_head(model, features, labels.to(target_device), target.num_outputs, config.head_weight_decay)
        kind, targets = "empirical", probe_labels
    else:
        kind, targets = "model", None
    model, inputs = _layout(model, inputs, kernels.channels_last, target_device)
    if representation == "diagonal":
        result = _chunk_diagonals(model, inputs, targets, kind, config)
    elif representation == "factor":
        result = fisher_factor(model, inputs, targets, kind=kind, params=config.params,
                               projection_dim=config.projection_dim, batch_size=config.batch_size)
    else:
        raise TanasError(f"representation must be 'diagonal' or 'factor', got {representation!r}")
    return result, time.perf_counter() - started


def _layout(model: BackboneHeadNet, images: torch.Tensor, channels_last: bool, device: torch.device):
    """``(model, images)`` in channels-last layout when asked and on a CPU, else in the default layout (the model is
    converted in place, so a pass that asks for the default after one that asked for channels-last gets it)."""
    layout = torch.channels_last if channels_last and device.type == "cpu" else torch.contiguous_format
    return model.to(memory_format=layout), images.contiguous(memory_format=layout)


def _chunk_diagonals(model, inputs: torch.Tensor, targets: torch.Tensor | None, kind: str,
                     config: FisherConfig) -> torch.Tensor:
    """``[B, n]``: the diagonal Fisher of each of ``config.chunks`` consecutive pieces of the probe images (sizes
    differ by at most one; the full-sample Fisher is their size-weighted mean, ``chunk_sizes``), all in one pass.
    Resampling the pieces is the bootstrap over Fisher images."""
    groups = min(config.chunks, len(inputs))
    return diagonal_fisher(model, inputs, targets, kind=kind, params=config.params, batch_size=config.batch_size,
                           groups=groups).reshape(groups, -1)


def chunk_sizes(samples: int, chunks: int) -> list[int]:
    """Images in each probe piece of ``_chunk_diagonals`` (``samples`` images in ``chunks`` pieces)."""
    return [len(piece) for piece in torch.tensor_split(torch.arange(samples), min(chunks, samples))]


def probe_images_used(target: Task, config: FisherConfig) -> int:
    """How many probe images a Fisher of ``target`` averages over (``probe_images.probe_count``: M rounded down to a
    multiple of its outputs, or fewer where the task holds fewer)."""
    return probe_count(target, config.samples)


def _store_fisher(workspace: Workspace, key: str, record: NetworkRecord, target: Task, representation: str,
                  result: torch.Tensor | FisherFactor, seconds: float, config: FisherConfig, draw: int) -> None:
    matrix = result.matrix if isinstance(result, FisherFactor) else result
    sizes = (chunk_sizes(probe_images_used(target, config), len(matrix))
             if representation == "diagonal" and matrix.ndim == 2 else None)
    if isinstance(result, FisherFactor):
        n, sketch_seed = result.num_params, result.sketch_seed
    else:
        n, sketch_seed = result.shape[-1], None
    ref = workspace.write_tensors("fisher", key, {"fisher": matrix})
    workspace.put_result("fisher", key, dict(network=record.key, arch=record.arch, baseline=record.task,
                                             target=target.name, seed=record.seed, representation=representation,
                                             n=n, sketch_seed=sketch_seed, seconds=seconds, chunk_sizes=sizes,
                                             draw=draw), ref)


def stored_chunks(workspace: Workspace, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The stored per-piece diagonals ``[B, n]`` of ``F[b, t]`` and each piece's share of the images ``[B]``
    (float64, summing to 1); ``None`` when missing or not a diagonal."""
    stored = workspace.get_result("fisher", key)
    if stored is None or stored[0]["representation"] != "diagonal":
        return None
    return _read_chunks(workspace, *stored)


def _read_chunks(workspace: Workspace, payload: dict, ref) -> tuple[torch.Tensor, torch.Tensor]:
    chunks = workspace.read_tensors(ref)["fisher"]
    chunks = chunks if chunks.ndim == 2 else chunks[None]
    sizes = torch.tensor(payload.get("chunk_sizes") or [1] * len(chunks), dtype=torch.float64)
    return chunks, sizes / sizes.sum()


@functools.lru_cache(maxsize=16)
def _probe_examples(target: Task, spec, count: int, draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``X_t`` for the Fisher: ``count`` held-out images ``[count, C, H, W]`` of draw ``draw`` of ``target`` and
    their labels."""
    return make_probe(target, count, spec, draw=draw)


@functools.lru_cache(maxsize=64)
def fisher_segments(arch: str, width: float, in_channels: int, num_classes: int, params: str) -> tuple[int, ...]:
    """The sizes of the parameter tensors a Fisher diagonal concatenates, in order (for per-tensor metrics)."""
    model = build_network(arch, num_classes, in_channels, width)
    return tuple(p.numel() for _, p in select_parameters(model, params))


@functools.lru_cache(maxsize=16)
def _target_examples(target: Task, sizes, spec, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training images ``[count, C, H, W]`` and labels of ``target``'s split of data seed
    ``seed`` (0 for every baseline of a column, so it is built once per target rather than once per pair)."""
    images, labels = make_splits(target, sizes, seed=seed, spec=spec).tensors("train")
    return images[:count], labels[:count]


_RECENT_DIAGONALS = 16


class FisherSource:
    """The ``F[b, t]`` of a distance computation, computed where ``backend`` runs work and stored by this process.

    Locally, ``get`` reads a Fisher from the store each time it is asked for (so at most the two Fishers of one
    pair are in memory, which matters for full-matrix factors); on Ray it returns an object-store handle, uploaded
    once and passed to every distance task that needs it.
    """

    def __init__(self, context: RunContext, suite, preset, representation, config, workers: int = 1):
        self.workspace, self.suite, self.preset = context.workspace, suite, preset
        # Distances run here (they are fast and need the stored Fishers); on Ray, one task per pair.
        self.backend = context.backend.training(1, context.device)
        # Fishers: locally in `workers` processes on a CPU (one thread each: many small layers leave a second
        # thread idle, so processes side by side beat one process with more threads; docs/benchmarks.md), else
        # here; on Ray, one task per pair.
        self.compute = context.backend.training(workers, context.device)
        self.device, self.check = self.compute.worker_device(context.device), context.check
        self.representation, self.config = representation, config
        self.handles: dict[str, object] = {}
        self.recent: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.count = 0

    def segments(self, record: NetworkRecord, target: Task, draw: int = 0) -> tuple[int, ...]:
        """Parameter tensor sizes of ``F[record, target]`` (the refitted head predicts ``target``'s outputs; the
        same for every ``draw``)."""
        classes = target.num_outputs if self.config.head == "refit" else record.num_classes
        return fisher_segments(record.arch, record.width, record.in_channels, classes, self.config.params)

    def key(self, record: NetworkRecord, target: Task, draw: int = 0) -> str:
        """The store key of ``F[record, target]`` on data draw ``draw`` of the target."""
        return _fisher_key(record, self.suite, target, self.preset, self.representation, self.config, draw)

    def ensure(self, entries: list[tuple], on_done: Callable[[NetworkRecord, Task], None]) -> None:
        """Compute every missing Fisher of ``entries`` (``(record, target)`` or ``(record, target, draw)``; one
        piece of work per distinct entry) and store each as it arrives."""
        missing, seen = [], set()
        for record, target, draw in (_with_draw(entry) for entry in entries):
            key = self.key(record, target, draw)
            if key in seen:
                continue
            seen.add(key)
            if self.workspace.get_result("fisher", key) is None:
                missing.append((record, target, draw))
            else:
                self.count += 1
                on_done(record, target)
        states: dict[str, object] = {}

        def items():  # lazily: locally, one network's weights are read when its first pair runs
            for record, target, draw in missing:
                if record.key not in states:
                    states[record.key] = self.compute.put(verify_checkpoint(self.workspace, record))
                yield (states[record.key], record, self.suite, target, self.preset, self.representation,
                       self.config, self.device, draw)

        for position, (result, seconds) in self.compute.map(compute_target_fisher, items(), check=self.check):
            record, target, draw = missing[position]
            _store_fisher(self.workspace, self.key(record, target, draw), record, target, self.representation,
                          result, seconds, self.config, draw)
            self.count += 1
            on_done(record, target)

    def get(self, record: NetworkRecord, target: Task, draw: int = 0):
        """``F[record, target]`` on data draw ``draw`` (locally the tensor, on Ray an object-store handle). Locally
        the last ``_RECENT_DIAGONALS`` diagonals stay in memory: a column's pairs all need its ``F[t, t]``."""
        key = self.key(record, target, draw)
        if self.backend.in_process:
            if self.representation != "diagonal":
                return stored_fisher(self.workspace, key)
            if key not in self.recent:
                self.recent[key] = stored_fisher(self.workspace, key)
                while len(self.recent) > _RECENT_DIAGONALS:
                    self.recent.popitem(last=False)
            self.recent.move_to_end(key)
            return self.recent[key]
        if key not in self.handles:
            self.handles[key] = self.backend.put(stored_fisher(self.workspace, key))
        return self.handles[key]

    def release(self, keep: list[tuple]) -> None:
        """Drop the object-store handles except those of the entries ``keep`` (needed again for the noise floor)."""
        kept = {self.key(*entry) for entry in keep}
        self.handles = {key: handle for key, handle in self.handles.items() if key in kept}


def _with_draw(entry: tuple) -> tuple[NetworkRecord, Task, int]:
    """``(record, target, draw)`` of a Fisher entry given with or without its draw (0)."""
    return entry if len(entry) == 3 else (*entry, 0)
