"""Tasks: a dataset plus ordered groups of classes (+ an optional "anything else" output), and their splits
(the suites of the source document built from them are in ``suites``).

A task's output ``k`` is its ``k``-th group; with ``other`` set, one last output collects every remaining class (or
only ``other_classes`` when given, e.g. the other nine of ten Quick, Draw! categories). ``TaskSplits`` draws
deterministic, class-balanced train / validation / test selections: train and validation come from the dataset's
training images and change with the seed, test comes from its test images and is the same for every seed. Search
uses validation; test is for final reporting only.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from tanas_core.data.datasets import DATASETS, RawDataset, dataset_class_names, load_dataset, to_model_input
from tanas_core.data.probe_images import probe_mask, probe_selection
from tanas_core.data.selection import all_remaining, balanced_take, class_members
from tanas_core.errors import TanasError

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_TEST_SELECTION_SEED = 7


@dataclass(frozen=True)
class Task:
    """A classification task over one dataset.

    Attributes:
        name: short identifier (letters, digits, ``_ . -``), unique within its suite.
        dataset: a name from ``data.DATASETS``.
        groups: ordered groups of class names; group ``k`` is output ``k``.
        other: add a last output, "anything else", for the classes in no group.
        other_classes: restrict "anything else" to these classes (default: every class in no group).
        labels: display names of the group outputs (default: the classes joined by ``+``).
        description: one line for people.
    """

    name: str
    dataset: str
    groups: tuple[tuple[str, ...], ...]
    other: bool = False
    other_classes: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    description: str = ""

    @property
    def num_outputs(self) -> int:
        return len(self.groups) + int(self.other)

    @property
    def output_names(self) -> list[str]:
        names = list(self.labels) if self.labels else ["+".join(group) for group in self.groups]
        return names + (["anything else"] if self.other else [])

    def to_dict(self) -> dict:
        """JSON-ready form; ``Task.from_dict`` inverts it."""
        return dict(name=self.name, dataset=self.dataset, groups=[list(g) for g in self.groups], other=self.other,
                    other_classes=list(self.other_classes) if self.other_classes is not None else None,
                    labels=list(self.labels) if self.labels else None, description=self.description)

    @classmethod
    def from_dict(cls, payload: dict) -> Task:
        """Rebuild and validate a task from ``to_dict`` output (or user JSON); bad input raises ``ValueError``."""
        if not isinstance(payload, dict):
            raise TanasError(f"a task must be a JSON object, got {type(payload).__name__}")
        unknown = set(payload) - {"name", "dataset", "groups", "other", "other_classes", "labels", "description"}
        if unknown:
            raise TanasError(f"unknown task field(s) {sorted(unknown)}")
        for key in ("name", "dataset", "groups"):
            if key not in payload:
                raise TanasError(f"a task needs a {key!r} field")
        return make_task(payload["name"], payload["dataset"], payload["groups"], other=payload.get("other", False),
                         other_classes=payload.get("other_classes"), labels=payload.get("labels"),
                         description=payload.get("description", ""))

    def fingerprint(self) -> str:
        """Canonical JSON of the definition (the description excluded): equal fingerprints mean equal tasks."""
        payload = self.to_dict()
        payload.pop("description")
        return json.dumps(payload, sort_keys=True)

    def label_map(self, class_names: tuple[str, ...]) -> np.ndarray:
        """``[num_dataset_classes]`` int64: the output of each dataset class, -1 for classes the task leaves out."""
        index = {name: i for i, name in enumerate(class_names)}
        mapping = np.full(len(class_names), -1, dtype=np.int64)
        for output, group in enumerate(self.groups):
            mapping[[index[c] for c in group]] = output
        if self.other:
            pool = self.other_classes if self.other_classes is not None else [
                c for c in class_names if mapping[index[c]] == -1]
            mapping[[index[c] for c in pool]] = len(self.groups)
        return mapping


def make_task(name: str, dataset: str, groups, other: bool = False, other_classes=None, labels=None,
              description: str = "") -> Task:
    """Validated ``Task``. Classes may be given by name or by integer label.

    Raises ``ValueError`` when: the name is not a short identifier, the dataset is unknown, a group is empty, a class
    does not exist or appears twice, "anything else" would be empty, or the task has fewer than 2 outputs.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise TanasError(f"task name {name!r} must be 1-64 characters of letters, digits, '_', '.', '-', starting "
                         "with a letter or digit")
    if dataset not in DATASETS:
        raise TanasError(f"task {name!r}: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    class_names = dataset_class_names(dataset)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple)) or not groups:
        raise TanasError(f"task {name!r}: groups must be a non-empty list of lists of classes")
    resolved: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for number, group in enumerate(groups):
        if isinstance(group, (str, int)):
            group = [group]
        if not isinstance(group, (list, tuple)) or not group:
            raise TanasError(f"task {name!r}: group {number + 1} is empty; every output needs at least one class")
        members = tuple(_resolve_class(name, dataset, class_names, c) for c in group)
        for member in members:
            if member in seen:
                where = "twice in group" if seen[member] == number else f"in groups {seen[member] + 1} and"
                raise TanasError(f"task {name!r}: class {member!r} appears {where} {number + 1}; groups must be "
                                 "disjoint")
            seen[member] = number
        resolved.append(members)
    if not isinstance(other, bool):
        raise TanasError(f"task {name!r}: 'other' must be true or false")
    rest = None
    if other_classes is not None:
        if not other:
            raise TanasError(f"task {name!r}: other_classes is given but 'other' (anything else) is off")
        rest = tuple(_resolve_class(name, dataset, class_names, c) for c in other_classes)
        clash = sorted(set(rest) & set(seen))
        if clash:
            raise TanasError(f"task {name!r}: {clash} are in a group and in 'anything else'")
        if len(set(rest)) != len(rest):
            raise TanasError(f"task {name!r}: other_classes lists a class twice")
    if other and not (rest if rest is not None else [c for c in class_names if c not in seen]):
        raise TanasError(f"task {name!r}: 'anything else' would be empty: every class of {dataset} is in a group")
    outputs = len(resolved) + int(other)
    if outputs < 2:
        raise TanasError(f"task {name!r} has {outputs} output; a task needs at least 2 (add a group, or turn on "
                         "'anything else')")
    if labels is not None:
        labels = tuple(str(label) for label in labels)
        if len(labels) != len(resolved):
            raise TanasError(f"task {name!r}: {len(labels)} labels for {len(resolved)} groups")
    return Task(name, dataset, tuple(resolved), other, rest, labels, str(description))


def _resolve_class(task: str, dataset: str, class_names: tuple[str, ...], value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(class_names):
            return class_names[int(value)]
        raise TanasError(f"task {task!r}: class label {value} does not exist in {dataset} "
                         f"(labels 0..{len(class_names) - 1})")
    if isinstance(value, str) and value in class_names:
        return value
    if isinstance(value, str):  # "Trouser" for "Trouser", "trouser" too: stored as the dataset spells it
        folded = [c for c in class_names if c.casefold() == value.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
    shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
    raise TanasError(f"task {task!r}: class {value!r} does not exist in {dataset} (classes: {shown})")


def refines(finer: Task, coarser: Task) -> bool:
    """True when ``finer`` labels every image of ``coarser`` at least as finely: same dataset, every class that
    ``coarser`` uses is used by ``finer``, and two classes that share an output of ``finer`` share one of ``coarser``
    (so ``coarser``'s label is a function of ``finer``'s). MNIST 10-class refines "digit 0" and "odd / even"; "0, 1,
    2, 3, anything else" refines "digit 0" but not "digit 6" (6 shares "anything else" with 7). A task refines
    itself."""
    if finer.dataset != coarser.dataset:
        return False
    names = dataset_class_names(coarser.dataset)
    fine, coarse = finer.label_map(names), coarser.label_map(names)
    used = coarse >= 0
    if (fine[used] < 0).any():
        return False
    return all(len(set(coarse[used & (fine == output)])) <= 1 for output in set(fine[used].tolist()))


# ---------------------------------------------------------------------------------------------------- splits

@dataclass(frozen=True)
class SplitSizes:
    """Upper bounds on the number of images per split for a whole task (``None``: use every available image).

    A bounded split is class-balanced: each output gets ``size // num_outputs`` images (fewer when the scarcest
    output has fewer, so balance holds), spread evenly over the output's source classes. An unbounded split takes
    everything (validation then takes ``val_fraction`` of each class's training images).
    """

    train: int | None
    val: int | None
    test: int | None
    val_fraction: float = 0.1


@dataclass(frozen=True)
class InputSpec:
    """What the networks of a suite consume: ``channels`` x ``size`` x ``size`` images."""

    channels: int
    size: int = 32


@dataclass
class TaskSplits:
    """The data of one task for one seed: index selections into the raw dataset and lazily built tensors.

    ``indices[split]`` holds positions into the dataset's train images (``"train"``, ``"val"``) or test images
    (``"test"``); ``labels[split]`` the task outputs ``[N]`` (int64). ``tensors(split)`` gives
    ``(images [N, C, size, size] float32, labels [N] int64)``.
    """

    task: Task
    dataset: RawDataset
    spec: InputSpec
    seed: int
    indices: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    _cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.indices:
            raise TanasError(f"unknown split {split!r}: choose train, val or test")
        if split not in self._cache:
            pool = self.dataset.x_test if split == "test" else self.dataset.x_train
            images = to_model_input(pool[self.indices[split]], self.dataset, self.spec.channels, self.spec.size)
            self._cache[split] = images, torch.from_numpy(self.labels[split])
        return self._cache[split]

    def sample_sheet(self, per_output: int = 8) -> np.ndarray:
        """uint8 contact sheet ``[outputs * H, per_output * W, C]``: one row per task output, the first
        ``per_output`` training images of that output (raw pixels, as a person sees them)."""
        height, width, channels = self.dataset.x_train.shape[1:]
        sheet = np.zeros((self.task.num_outputs * height, per_output * width, channels), dtype=np.uint8)
        for output in range(self.task.num_outputs):
            members = self.indices["train"][self.labels["train"] == output][:per_output]
            for column, index in enumerate(members):
                sheet[output * height:(output + 1) * height, column * width:(column + 1) * width] = \
                    self.dataset.x_train[index]
        return sheet

    def counts(self) -> dict[str, list[int]]:
        """Images per output ``{split: [num_outputs]}``."""
        return {s: np.bincount(y, minlength=self.task.num_outputs).tolist() for s, y in self.labels.items()}


def make_splits(task: Task, sizes: SplitSizes, seed: int, spec: InputSpec | None = None,
                dataset: RawDataset | None = None) -> TaskSplits:
    """Deterministic class-balanced splits of ``task`` for ``seed``.

    Raises ``ValueError`` when a split would hold no image of some output.
    """
    dataset = dataset if dataset is not None else load_dataset(task.dataset)
    spec = spec or InputSpec(channels=dataset.channels)
    mapping = task.label_map(dataset.class_names)
    rng = np.random.default_rng(seed)
    train_pool = class_members(dataset.y_train, mapping, task.num_outputs, rng, exclude=probe_mask(dataset))
    test_pool = class_members(dataset.y_test, mapping, task.num_outputs, np.random.default_rng(_TEST_SELECTION_SEED))

    indices, labels = {}, {}
    nothing_used = [[0] * len(output) for output in train_pool]
    if sizes.val is None:
        val_take = [[int(round(len(c) * sizes.val_fraction)) for c in output] for output in train_pool]
        train_take = (all_remaining(train_pool, val_take) if sizes.train is None
                      else balanced_take(train_pool, sizes.train, val_take))
    elif sizes.train is None:
        val_take = balanced_take(train_pool, sizes.val, nothing_used)
        train_take = all_remaining(train_pool, val_take)
    else:
        # Scarce data: shrink train and validation together, keeping their ratio, rather than starving train.
        outputs = len(train_pool)
        per_output = min(sizes.train // outputs + sizes.val // outputs, *(sum(map(len, o)) for o in train_pool))
        val_per_output = max(1, int(round(per_output * sizes.val / (sizes.train + sizes.val))))
        if per_output - val_per_output < 1:
            raise TanasError(f"task {task.name!r}: split sizes train={sizes.train}, val={sizes.val} leave fewer than "
                             f"one training image per output for its {outputs} outputs; use larger split sizes")
        val_take = balanced_take(train_pool, val_per_output * outputs, nothing_used)
        train_take = balanced_take(train_pool, (per_output - val_per_output) * outputs, val_take)
    test_take = ([[len(c) for c in output] for output in test_pool] if sizes.test is None
                 else balanced_take(test_pool, sizes.test, [[0] * len(o) for o in test_pool]))
    for split, pool, take, offset in (("val", train_pool, val_take, None), ("train", train_pool, train_take, val_take),
                                      ("test", test_pool, test_take, None)):
        chosen, outs = [], []
        for output, (classes, counts) in enumerate(zip(pool, take)):
            for c, (members, count) in enumerate(zip(classes, counts)):
                start = offset[output][c] if offset else 0
                chosen.append(members[start:start + count])
                outs.append(np.full(count, output, dtype=np.int64))
        order = rng.permutation(sum(len(c) for c in chosen))
        indices[split] = np.concatenate(chosen)[order]
        labels[split] = np.concatenate(outs)[order]
        missing = [task.output_names[o] for o in range(task.num_outputs) if not (labels[split] == o).any()]
        if missing:
            raise TanasError(f"task {task.name!r}: the {split} split has no image of output(s) {missing}; "
                             "the dataset or the size preset is too small for this task")
    return TaskSplits(task, dataset, spec, seed, indices, labels)


def make_probe(task: Task, count: int, spec: InputSpec | None = None, dataset: RawDataset | None = None,
               draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``probe_selection`` as model input: images ``[n, C, H, W]`` and labels ``[n]`` (the same for every seed;
    draw 0 the held-out probe images, draw ``r >= 1`` another draw from the test images)."""
    dataset = dataset if dataset is not None else load_dataset(task.dataset)
    spec = spec or InputSpec(channels=dataset.channels)
    positions, labels = probe_selection(task, count, dataset, draw)
    pixels = dataset.x_train if draw == 0 else dataset.x_test
    images = to_model_input(pixels[positions], dataset, spec.channels, spec.size)
    return images, torch.from_numpy(labels)


def check_task_data(task: Task, preset_sizes: SplitSizes, spec: InputSpec | None = None) -> TaskSplits:
    """The task's seed-0 splits at ``preset_sizes``: proves every output has images before the task is saved or
    trained (``TanasError`` naming the empty output otherwise). Used by the Tasks page and ``tasks add``."""
    return make_splits(task, preset_sizes, 0, spec)
