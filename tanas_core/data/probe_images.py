"""Held-out probe images: a fixed share of every dataset's training images that no split of any task contains, so
a Fisher computed on them sees images no network trained on and no head was fitted on (for every task and seed).

**Draws.** Draw 0 is that probe set. Draw ``r >= 1`` is another sample of the same task from images no network
trained on: the dataset's *test* images, in an order of its own (different draws may share images; none shares one
with draw 0). The common-probe view compares a task's draws to tell its data noise from task differences."""
from __future__ import annotations

import numpy as np

from tanas_core.data.datasets import RawDataset, load_dataset
from tanas_core.data.selection import balanced_take, class_members
from tanas_core.errors import TanasError

PROBE_FRACTION = 0.2  # of each class's training images, at most PROBE_CAP of them (200 on the CIFAR-10 pack: M <= 800)
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


def _draw_pool(dataset: RawDataset, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels of the split a draw comes from, mask of the images it may use)``: draw 0 the probe share of the
    training images, draw >= 1 every test image."""
    if draw == 0:
        return dataset.y_train, probe_mask(dataset)
    return dataset.y_test, np.ones(len(dataset.y_test), dtype=bool)


def probe_capacity(task, dataset: RawDataset | None = None, draw: int = 0) -> int:
    """How many class-balanced images draw ``draw`` of ``task`` can hold (its scarcest output's images x its
    outputs; draw 0: the held-out probe images, draw >= 1: the test images)."""
    dataset = dataset if dataset is not None else load_dataset(task.dataset)
    labels, allowed = _draw_pool(dataset, draw)
    outputs = task.label_map(dataset.class_names)[labels[allowed]]
    return int(np.bincount(outputs[outputs >= 0], minlength=task.num_outputs).min()) * task.num_outputs


# Below this a Fisher is an average over too few images to be worth computing: such a task is refused. Above it a
# small count is allowed (its noise shows in the report's reference r[t], which uses the same count).
MIN_PROBE_IMAGES = 20


def probe_count(task, samples: int, dataset: RawDataset | None = None) -> int:
    """How many images a Fisher of ``task`` averages over when M = ``samples``: M, or what the task holds when its
    held-out probe images or its test images (the data draws) hold fewer, rounded down to a multiple of its outputs.
    Every draw of a task uses this one count, so a task's twins compare like with like; M = 800 fits every task of
    the registered suites, and a task with fewer (a CIFAR-10 "cat / dog / anything else": 600) still runs."""
    dataset = dataset if dataset is not None else load_dataset(task.dataset)
    return balanced(task, min(samples, probe_capacity(task, dataset), probe_capacity(task, dataset, draw=1)))


def balanced(task, count: int) -> int:
    """``count`` rounded down to a multiple of ``task``'s outputs (a class-balanced draw)."""
    return count // task.num_outputs * task.num_outputs


def fewer_than_asked(tasks, samples: int) -> dict[str, int]:
    """``{task name: Fisher images}`` of the tasks of ``tasks`` whose Fishers average over fewer images than M =
    ``samples`` asks (rounded to their outputs): what a page or a report says next to M."""
    return {task.name: count for task in tasks if (count := probe_count(task, samples)) < balanced(task, samples)}


def probe_selection(task, count: int, dataset: RawDataset, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(positions [n], task outputs [n])`` of ``count`` class-balanced images of ``task`` (``n``: ``count``
    rounded down to a multiple of its outputs), in a fixed order. Draw 0: positions into the training images (the
    held-out probe set); draw ``r >= 1``: into the test images, ordered by a seed of its own. ``TanasError`` when
    the task has fewer (``probe_capacity``)."""
    available = probe_capacity(task, dataset, draw)
    if count > available:
        where = "held-out probe images" if draw == 0 else f"test images for data draw {draw}"
        raise TanasError(f"task {task.name!r} has {available} {where} (its scarcest output has "
                         f"{available // task.num_outputs}); the Fisher asks for M = {count}: lower M to <= "
                         f"{available}")
    rng = np.random.default_rng(_PROBE_SEED + draw)
    labels, allowed = _draw_pool(dataset, draw)
    pool = class_members(labels, task.label_map(dataset.class_names), task.num_outputs, rng, exclude=~allowed)
    take = balanced_take(pool, count, [[0] * len(output) for output in pool])
    chosen = [members[:n] for output, counts in zip(pool, take) for members, n in zip(output, counts)]
    outputs = [np.full(n, o, dtype=np.int64) for o, counts in enumerate(take) for n in counts]
    order = rng.permutation(sum(len(c) for c in chosen))
    return np.concatenate(chosen)[order], np.concatenate(outputs)[order]
