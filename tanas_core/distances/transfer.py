"""Transfer, what a task distance is for: does the network of a close task transfer better to the target?

The source defines the distance between tasks as "the difficulty to apply the knowledge of one task to the other";
Task2Vec and Taskonomy judge a task distance by how well it predicts transfer. For every pair ``(b, t)`` of a suite
and every zoo seed this measures how well ``b``'s zoo network ``N_b`` serves ``t``, against the same budget from a
network of the same architecture that learned nothing:

* ``linear``: a linear head fitted on ``N_b``'s frozen features of ``t``'s training images (the head the Fisher
  ``F[b, t]`` is taken with: same images, same penalty), its accuracy on ``t``'s test images; from scratch: the same
  head on a randomly initialised network's features.
* ``finetune`` (linear probing, then fine-tuning: Kumar et al., 2022): on the first ``images`` of ``t``'s training
  images, a linear head fitted on ``N_b``'s frozen features, then the whole network trained ``epochs`` epochs at a
  tenth of the preset's learning rate (constant), so the fine-tuning starts from a fitted head and keeps what
  ``N_b`` learned; its test accuracy. From scratch: the same on a network that learned nothing. A few hundred
  images make the gain visible: with all of them a network trained from nothing catches up.

The **gain** ``gain[b, t]`` is the accuracy minus the scratch accuracy of ``t`` (same seed). A valid distance has
``d[b, t]`` small where ``gain[b, t]`` is large: ``transfer_figures`` gives the per-target rank correlation (negative
is good) and how often the closest baseline is the best source. Each accuracy is stored (kind ``transfer``), so a
repeated report reads it.
"""
from __future__ import annotations

import copy
import functools
import itertools

import numpy as np
import torch

from tanas_core.data.suites import Suite
from tanas_core.data.tasks import Task, make_splits
from tanas_core.fisher.target import HEAD_FIT, frozen_features, refit_head
from tanas_core.intervals import resampling_range, spearman
from tanas_core.networks import build_network
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import FisherConfig, ValidateRequest, ZooRequest
from tanas_core.training.checkpoints import load_network
from tanas_core.training.trainer import Preset, evaluate, fit, get_preset
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import DistanceResult, NetworkRecord
from tanas_core.workspace.store import config_key

TRANSFER_KINDS = ("linear", "finetune")
_FEATURE_BATCH = 256


@functools.lru_cache(maxsize=4)
def _target_splits(target: Task, sizes, spec):
    """``target``'s splits of data seed 0, built once for all the sources (and scratch networks) it is tried with."""
    return make_splits(target, sizes, seed=0, spec=spec)


def _linear_accuracy(model, splits, head_samples: int, weight_decay: float, num_outputs: int, device) -> float:
    """Test accuracy of a linear head fitted on ``model``'s frozen features of the first ``head_samples`` training
    images."""
    images, labels = splits.tensors("train")
    images, labels = images[:head_samples], labels[:head_samples]
    model = model.to(device).eval()
    features = frozen_features(model, images, device, _FEATURE_BATCH)
    refitted = refit_head(model, features, labels.to(device), num_outputs, weight_decay)
    return evaluate(refitted, *splits.tensors("test"), device=device)


# Fine-tuning keeps the source's features: the whole network trains at this share of the preset's peak rate.
FINETUNE_LR_SHARE = 0.1


def _finetuned_accuracy(model, splits, preset: Preset, epochs: float, seed: int, num_outputs: int, device,
                        images: int, weight_decay: float) -> float:
    """Test accuracy of ``model`` after linear probing then fine-tuning on the first ``images`` training images: a
    head fitted on its frozen features (penalty ``weight_decay``), then ``epochs`` epochs of the whole network at
    ``FINETUNE_LR_SHARE`` of the preset's learning rate."""
    x, y = (tensor[:images] for tensor in splits.tensors("train"))
    model = model.to(device).eval()
    model = refit_head(copy.deepcopy(model), frozen_features(model, x, device, _FEATURE_BATCH), y.to(device),
                       num_outputs, weight_decay)
    fit(model, x, y, preset, epochs, seed, device, name=f"transfer to {splits.task.name!r}",
        lr=FINETUNE_LR_SHARE * preset.lr)
    return evaluate(model, *splits.tensors("test"), device=device)


def transfer_accuracy(context: RunContext, suite: Suite, source: NetworkRecord | None, target: Task, arch: str,
                      preset: Preset, seed: int, kind: str, epochs: float, fisher: FisherConfig,
                      images: int = 500) -> float:
    """The test accuracy on ``target`` of ``source``'s network (``None``: a network that learned nothing, seeded by
    ``seed``) after ``kind`` transfer (``"linear"``, or ``"finetune"`` for ``epochs`` epochs on ``images`` training
    images); stored."""
    finetune = dict(epochs=epochs, preset=preset.to_dict(), protocol="lp-ft", images=images,
                    head_weight_decay=fisher.head_weight_decay)
    identity = dict(kind="transfer", transfer=kind, target=target.fingerprint(), spec=vars(suite.spec), arch=arch,
                    sizes=vars(preset.sizes), seed=seed,
                    source=None if source is None else dict(key=source.key, sha=source.sha256),
                    **(finetune if kind == "finetune" else
                       dict(head_samples=fisher.head_samples, head_weight_decay=fisher.head_weight_decay)), **HEAD_FIT)
    key = config_key(identity)
    stored = context.workspace.get_result("transfer", key)
    if stored is not None:
        return float(stored[0]["accuracy"])
    device = resolve_device(context.device)
    splits = _target_splits(target, preset.sizes, suite.spec)
    if source is None:
        torch.manual_seed(seed)
        model = build_network(arch, target.num_outputs, suite.spec.channels, preset.widths[arch])
    else:
        model = load_network(context.workspace, source, device)
    if kind == "linear":
        accuracy = _linear_accuracy(model, splits, fisher.head_samples, fisher.head_weight_decay,
                                    target.num_outputs, device)
    else:
        torch.manual_seed(seed)
        accuracy = _finetuned_accuracy(model, splits, preset, epochs, seed, target.num_outputs, device, images,
                                       fisher.head_weight_decay)
    context.workspace.put_result("transfer", key, dict(identity, accuracy=accuracy))
    return accuracy


def transfer_gains(context: RunContext, suite: Suite, networks: dict, arch: str, preset: Preset, seeds: list[int],
                   kind: str, epochs: float, fisher: FisherConfig, images: int = 500) -> np.ndarray:
    """``[seeds, T, T]``: ``gain[k, b, t]``, the accuracy of ``b``'s network of seed ``k`` on ``t`` after ``kind``
    transfer minus that of a network that learned nothing (seed ``k``); the diagonal is ``t``'s own network.
    ``networks``: ``{(task, seed, 0): record}``."""
    tasks = list(suite.tasks)
    gains = np.zeros((len(seeds), len(tasks), len(tasks)))
    steps = context.step_phases([f"seed {seed}: transfer to {task.name}" for seed in seeds for task in tasks])
    for index, (k, t) in enumerate((k, t) for k in range(len(seeds)) for t in range(len(tasks))):
        step, target = steps[index], tasks[t]
        scratch = transfer_accuracy(step, suite, None, target, arch, preset, seeds[k], kind, epochs, fisher, images)
        for b, source in enumerate(tasks):
            record = networks[(source.name, seeds[k], 0)]
            gains[k, b, t] = transfer_accuracy(step, suite, record, target, arch, preset, seeds[k], kind, epochs,
                                               fisher, images) - scratch
        step.progress(f"{kind} transfer to {target.name}", 1.0)
    return gains


def report_transfer_gains(request: ValidateRequest, suite, context: RunContext) -> dict[str, np.ndarray] | None:
    """``{arch: [seeds, T, T] gains}`` of ``request.transfer`` for a validation report (``transfer_gains`` of the
    zoo networks of each architecture and seed, trained first when missing), or ``None`` without transfer."""
    if request.transfer == "none":
        return None
    gains, preset, seeds = {}, get_preset(request.preset), list(range(request.seeds))
    for arch, step in zip(request.archs, context.step_phases(list(request.archs))):
        records = train_zoo(ZooRequest(suite=request.suite, archs=(arch,), seeds=request.seeds,
                                       preset=request.preset, workers=request.workers), step.phase("zoo", 0.0, 0.1))
        networks = {(r.task, r.seed, r.replicate): r for r in records}
        gains[arch] = transfer_gains(step.phase("transfer", 0.1, 1.0), suite, networks, arch, preset, seeds,
                                     request.transfer, request.transfer_epochs, request.fisher,
                                     request.transfer_images)
    return gains


def transfer_figures(results: list[DistanceResult], gains: dict[str, np.ndarray],
                     datasets: dict[str, str] | None = None) -> dict:
    """``{transfer_rank_correlation, closest_is_best_source[, transfer_rank_correlation_within,
    closest_is_best_source_within], intervals}`` of one report row: over (architecture, target) columns, the mean
    Spearman correlation between the seeds' mean ``d[b, t]`` and mean transfer gain of the other baselines (negative:
    closer means better transfer), and the share of columns whose closest baseline is the best transfer source.
    ``*_within`` (suites of several datasets, ``datasets``: task -> dataset): the same over the baselines from the
    target's own dataset, the task signal (another dataset's network is both far and a poor source, which the
    figures over every baseline reward). ``intervals``: each figure's seed-resampling range (the matrices' and gains'
    seeds drawn together; ``None`` with one seed). ``gains``: ``{arch: [seeds, T, T]}``, seeds in the results'
    order."""
    def figures(positions: list[np.ndarray]) -> dict[str, float | None]:
        return _figures_and_within([(result.matrices[p].mean(axis=0), gains[result.arch][p].mean(axis=0),
                                     result.tasks) for result, p in zip(results, positions)], datasets)

    point = figures([np.arange(len(result.seeds)) for result in results])
    return dict(point, intervals=resampling_range([len(result.seeds) for result in results], figures))


def transfer_split_half(gains: dict[str, np.ndarray], tasks: list[str],
                        datasets: dict[str, str] | None = None) -> dict | None:
    """The noise reference of the rows' transfer figures: the two figures of a "distance" that is one half of the
    seeds' transfer ranking (minus its mean gains), scored against the other half's mean gains, averaged over every
    split of the seeds into ``S // 2`` and the rest (per architecture, ``gains``: ``{arch: [S, T, T]}``, ``tasks`` in
    their order). How far the ground truth agrees with itself: near -1 and 1 when another zoo would rank the sources
    alike, near 0 and chance when it would not, where no distance can score well. With ``datasets`` of several
    datasets, also ``*_within`` (as ``transfer_figures``). ``None`` with fewer than 2 seeds."""
    columns = []
    for gain in gains.values():
        seeds = range(gain.shape[0])
        if len(seeds) < 2:
            continue
        for half in itertools.combinations(seeds, len(seeds) // 2):
            rest = [k for k in seeds if k not in half]
            columns.append((-gain[list(half)].mean(axis=0), gain[rest].mean(axis=0), tasks))
    return _figures_and_within(columns, datasets) if columns else None


def _figures_and_within(columns: list[tuple[np.ndarray, np.ndarray, list[str]]],
                        datasets: dict[str, str] | None) -> dict[str, float | None]:
    """``_column_figures`` over every baseline and, for a suite of several datasets, over the baselines from each
    target's own dataset (``*_within``)."""
    figures = _column_figures(columns)
    if datasets is not None and len(set(datasets.values())) > 1:
        figures.update({f"{name}_within": value for name, value in _column_figures(columns, datasets).items()})
    return figures


def _column_figures(columns: list[tuple[np.ndarray, np.ndarray, list[str]]],
                    datasets: dict[str, str] | None = None) -> dict[str, float | None]:
    """``transfer_figures``' two figures of ``(mean distances [T, T], mean gains [T, T], tasks)`` per architecture,
    the baselines of a column restricted to the target's dataset when ``datasets`` is given; ``None`` where no column
    has a ranking to compare."""
    correlations, best = [], []
    for distances, gain, tasks in columns:
        for t, target in enumerate(tasks):
            others = [b for b in range(len(tasks)) if b != t and (datasets is None
                                                                  or datasets[tasks[b]] == datasets[target])]
            if not others:
                continue
            correlation = spearman(distances[others, t], gain[others, t])
            if not np.isnan(correlation):
                correlations.append(correlation)
            best.append(others[int(np.argmin(distances[others, t]))] == others[int(np.argmax(gain[others, t]))])
    return dict(transfer_rank_correlation=float(np.mean(correlations)) if correlations else None,
                closest_is_best_source=float(np.mean(best)) if best else None)
