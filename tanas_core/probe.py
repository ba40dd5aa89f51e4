"""Held-out probe images: a fixed share of every dataset's training images that no split of any task contains, so
a Fisher computed on them sees images no network trained on and no head was fitted on (for every task and seed)."""
from __future__ import annotations

import numpy as np

from .data import RawDataset, load_dataset
from .errors import TanasError
from .selection import balanced_take, class_members

PROBE_FRACTION = 0.2  # of each class's training images, at most PROBE_CAP of them (M = 512 on the CIFAR-10 pack)
PROBE_CAP = 500
_PROBE_SEED = 4242
_PROBE_MASKS: dict[tuple, np.ndarray] = {}


def probe_mask(dataset: RawDataset) -> np.ndarray:
    """``[N_train]`` bool: the dataset's held-out **probe** images, a fixed share of every class's training images
    (``PROBE_FRACTION``, at most ``PROBE_CAP`` per class, the same for every task and seed). No split of any task
    ever contains them, so Fisher matrices computed on them see images no network trained on and no head was fitted
    on."""
    key = (dataset.name, dataset.source, len(dataset.y_train))
    if key not in _PROBE_MASKS:
        rng = np.random.default_rng(_PROBE_SEED)
        mask = np.zeros(len(dataset.y_train), dtype=bool)
        for label in range(len(dataset.class_names)):
            members = rng.permutation(np.flatnonzero(dataset.y_train == label))
            mask[members[:min(PROBE_CAP, int(round(len(members) * PROBE_FRACTION)))]] = True
        _PROBE_MASKS[key] = mask
    return _PROBE_MASKS[key]


def probe_capacity(task, dataset: RawDataset | None = None) -> int:
    """How many class-balanced probe images ``task`` has (its scarcest output's probe images x its outputs)."""
    dataset = dataset if dataset is not None else load_dataset(task.dataset)
    outputs = task.label_map(dataset.class_names)[dataset.y_train[probe_mask(dataset)]]
    return int(np.bincount(outputs[outputs >= 0], minlength=task.num_outputs).min()) * task.num_outputs


def probe_selection(task, count: int, dataset: RawDataset) -> tuple[np.ndarray, np.ndarray]:
    """``(positions into the dataset's training images [n], task outputs [n])`` of ``count`` class-balanced probe
    images of ``task`` (``n``: ``count`` rounded down to a multiple of its outputs), in a fixed order;
    ``TanasError`` when the task has fewer (``probe_capacity``)."""
    available = probe_capacity(task, dataset)
    if count > available:
        raise TanasError(f"task {task.name!r} has {available} held-out probe images (its scarcest output has "
                         f"{available // task.num_outputs}); the Fisher asks for M = {count}: lower M to <= "
                         f"{available}")
    rng = np.random.default_rng(_PROBE_SEED)
    pool = class_members(dataset.y_train, task.label_map(dataset.class_names), task.num_outputs, rng,
                         exclude=~probe_mask(dataset))
    take = balanced_take(pool, count, [[0] * len(output) for output in pool])
    chosen = [members[:n] for output, counts in zip(pool, take) for members, n in zip(output, counts)]
    outputs = [np.full(n, o, dtype=np.int64) for o, counts in enumerate(take) for n in counts]
    order = rng.permutation(sum(len(c) for c in chosen))
    return np.concatenate(chosen)[order], np.concatenate(outputs)[order]
