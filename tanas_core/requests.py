"""One frozen request per operation: the only home of its defaults, its limits and its validation.

The CLI parses its arguments into these, the background jobs store ``request.to_dict()`` and rebuild the request
with ``from_dict`` (validated before the job is launched, so it cannot fail validation inside the job), and the app's
pages build them from widgets whose limits come from ``LIMITS``. Reading one request from a page widget to the
library call needs no dictionary of strings:

    request = DistanceRequest(suite="mnist4", archs=("vgg16",), fisher=FisherConfig(samples=256))
    request.validate(workspace)                   # TanasError naming the field, its range and the fix
    results = distance_matrices(request, RunContext(workspace))

``from_dict`` refuses unknown fields, treats a missing or ``None`` field as its default, and turns JSON numbers and
lists back into the field's type, so ``to_dict`` -> ``from_dict`` is the identity and equal requests have equal keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import ClassVar, Iterable

from .errors import TanasError
from .networks import ARCHITECTURES
from .tasks import CUSTOM_SUITE, SUITE_NAMES, resolve_suite, split_target
from .training import PRESETS

METRICS = ("logdet", "frechet", "frechet-full")
SPACES = ("related", "standard")
METHODS = ("fuse", "random")
HEADS = ("refit", "own")
PARAMS = ("backbone", "all")


def parse_archs(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"vgg16,resnet18"`` or a list -> validated architecture names (``TanasError`` for unknown ones)."""
    names = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown or not names:
        raise TanasError(f"unknown architecture(s) {unknown or names}: choose from {', '.join(ARCHITECTURES)}")
    return tuple(names)


def parse_names(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"a,b"`` or a list -> a tuple of stripped, non-empty names."""
    if not text:
        return ()
    return tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip())


def preset_names() -> tuple[str, ...]:
    """The presets a request may name (``training.PRESETS``, which a test or a script may extend)."""
    return tuple(PRESETS)


def _coerce(request_type: type, name: str, type_name: str, value):
    """A JSON / CLI value as the field's type (``int`` stays exact, ``float`` always a float, lists as tuples)."""
    nested = request_type.NESTED.get(name)
    if nested is not None:
        return value if isinstance(value, nested) else nested.from_dict(value)
    if type_name.startswith("tuple"):
        return parse_archs(value) if name == "archs" else parse_names(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        if type_name.startswith("int"):
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if type_name.startswith("float"):
            return float(value)
    except ValueError:
        raise TanasError(f"{request_type.WHAT}: {name} needs a{'n integer' if type_name.startswith('int') else ' number'}"
                         f", got {value!r}") from None
    return value


class Request:
    """Shared behaviour of the request types (all frozen dataclasses)."""

    WHAT: ClassVar[str] = "request"
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {}  # field -> inclusive (low, high)
    CHOICES: ClassVar[dict] = {}  # field -> allowed values, or a function giving them (presets can be added)
    NESTED: ClassVar[dict[str, type]] = {}

    @classmethod
    def from_dict(cls, params: dict | None):
        """A validated request from a JSON object; unknown fields are refused, missing / ``None`` ones default."""
        if params is not None and not isinstance(params, dict):
            raise TanasError(f"{cls.WHAT}: expected a JSON object, got {type(params).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params or {}) - set(known))
        if unknown:
            raise TanasError(f"{cls.WHAT}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values = {name: _coerce(cls, name, str(known[name].type), value)
                  for name, value in (params or {}).items() if value is not None}
        try:
            request = cls(**values)
        except TypeError as error:
            raise TanasError(f"{cls.WHAT}: {error}") from None
        request.validate()
        return request

    def to_dict(self) -> dict:
        """JSON-ready: nested requests as objects, tuples as lists, float fields as floats."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Request):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif str(f.type).startswith("float") and value is not None:
                value = float(value)
            out[f.name] = value
        return out

    def replace(self, **changes):
        """A copy with ``changes`` (validated)."""
        request = dataclasses.replace(self, **changes)
        request.validate()
        return request

    @classmethod
    def limits(cls, name: str) -> tuple[float, float]:
        """The inclusive ``(low, high)`` range of a numeric field (for widgets and error messages)."""
        return cls.LIMITS[name]

    @classmethod
    def default(cls, name: str):
        """The default value of field ``name``."""
        request_field = next(f for f in fields(cls) if f.name == name)
        if request_field.default_factory is not dataclasses.MISSING:
            return request_field.default_factory()
        return request_field.default

    def validate(self) -> None:
        """``TanasError`` naming the first field out of its range or choices."""
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise TanasError(f"{self.WHAT}: {name} must be in {_number(low)}..{_number(high)}, got {value!r}")
        for name, choices in self.CHOICES.items():
            choices = choices() if callable(choices) else choices
            if getattr(self, name) not in choices:
                raise TanasError(f"{self.WHAT}: {name} must be one of {', '.join(choices)}, got "
                                 f"{getattr(self, name)!r}")
        for name in self.NESTED:
            getattr(self, name).validate()


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------- parts

@dataclass(frozen=True)
class FisherConfig(Request):
    """How each ``F[b, t]`` is computed.

    ``samples``: M, images of ``X_t`` the Fisher averages over; ``head_samples``: images the refitted head is trained
    on (the first ``samples`` of them are the Fisher's, so ``head_samples >= samples``); ``head``: ``"refit"`` or
    ``"own"``; ``params``: ``"backbone"`` or ``"all"``; ``projection_dim``: CountSketch width for full-matrix metrics
    (``None``: exact); ``batch_size``: samples per per-sample-gradient chunk.
    """

    WHAT: ClassVar[str] = "Fisher settings"
    LIMITS: ClassVar[dict] = dict(samples=(2, 8192), head_samples=(2, 65536), batch_size=(1, 4096),
                                  projection_dim=(1, 100_000_000))
    CHOICES: ClassVar[dict] = dict(head=HEADS, params=PARAMS)

    samples: int = 256
    head_samples: int = 512
    head: str = "refit"
    params: str = "backbone"
    projection_dim: int | None = None
    batch_size: int = 128

    def validate(self) -> None:
        super().validate()
        if self.head_samples < self.samples:
            raise TanasError(f"{self.WHAT}: images for the head ({self.head_samples}) must be >= images per Fisher "
                             f"M ({self.samples}): the Fisher uses the head's training images; raise head_samples "
                             f"to at least {self.samples}")

    def check_preset(self, preset_name: str) -> None:
        """``TanasError`` when the preset's tasks cannot have M = ``samples`` training images (the head uses up to
        ``head_samples``, fewer when a task has fewer)."""
        available = PRESETS[preset_name].sizes.train
        if available is not None and self.samples > available:
            raise TanasError(f"{self.WHAT}: the {preset_name} preset has at most {available} training images per "
                             f"task, fewer than M = {self.samples} images per Fisher; lower M to <= {available} or "
                             "choose a larger preset")


@dataclass(frozen=True)
class SearchBudget(Request):
    """What a search may spend, in epochs of the training split (wall seconds are measured and reported).

    FUSE: ``rounds`` rounds of ``candidates`` candidates, at most ``epochs_per_round`` epochs of weight steps per
    round (fewer when alpha converges: max change of softmax(alpha) < ``tolerance`` over ``window`` steps, checked
    after ``min_steps``). Random search: ``random_candidates`` genotypes trained ``random_epochs`` each.
    ``final_epochs``: training of the chosen genotype from scratch. ``max_seconds``: optional wall-clock cap on the
    search itself (checked between steps; the search ends with the best candidate so far).
    """

    WHAT: ClassVar[str] = "search budget"
    LIMITS: ClassVar[dict] = dict(candidates=(2, 32), rounds=(1, 100), epochs_per_round=(0.01, 1000.0),
                                  random_candidates=(1, 10000), random_epochs=(0.01, 1000.0),
                                  final_epochs=(0.01, 1000.0), warmup=(0.0, 0.95), alpha_lr=(1e-6, 10.0),
                                  tolerance=(1e-9, 0.99), window=(1, 1000), min_steps=(1, 100000),
                                  max_seconds=(1.0, 1e7))

    # Defaults mirror the source document's cost ratio (FUSE 2 GPU days, random search 4): FUSE sees 2 x 4
    # candidates for half an epoch each, random search 8 candidates for a whole epoch each.
    candidates: int = 4
    rounds: int = 2
    epochs_per_round: float = 0.5
    random_candidates: int = 8
    random_epochs: float = 1.0
    final_epochs: float = 3.0
    warmup: float = 0.25
    alpha_lr: float = 1.0
    tolerance: float = 0.02
    window: int = 8
    min_steps: int = 8
    max_seconds: float | None = None

    @property
    def effort(self) -> float:
        """Candidate-epochs a FUSE search with this budget may spend (to rank stored genotypes by effort)."""
        return self.candidates * self.rounds * self.epochs_per_round


@dataclass(frozen=True)
class DistanceSettings(Request):
    """How task distances are computed: architectures (matrices averaged over them), ``seeds`` zoo seeds 0..K-1,
    the ``metric`` (eq. 5 ``logdet``, eq. 8 ``frechet``, eq. 7 ``frechet-full``), ``sigma`` (log-det only), the
    Fisher settings and ``workers`` (local processes that train missing zoo networks)."""

    WHAT: ClassVar[str] = "distance settings"
    LIMITS: ClassVar[dict] = dict(seeds=(1, 20), sigma=(1e-12, 1e6), workers=(1, 64))
    CHOICES: ClassVar[dict] = dict(metric=METRICS)
    NESTED: ClassVar[dict] = dict(fisher=FisherConfig)

    archs: tuple = ("vgg16",)
    seeds: int = 1
    metric: str = "logdet"
    sigma: float = 1e-3
    fisher: FisherConfig = field(default_factory=FisherConfig)
    workers: int = 1

    def validate(self) -> None:
        super().validate()
        parse_archs(self.archs)

    def settings(self) -> dict:
        """The ``DistanceSettings`` fields of this object (to build another request from them)."""
        return {f.name: getattr(self, f.name) for f in fields(DistanceSettings)}


# ---------------------------------------------------------------------------------------------- operations

@dataclass(frozen=True)
class ZooRequest(Request):
    """Train (or reuse) a network per task x architecture x seed of ``suite`` (``tasks``: a subset)."""

    WHAT: ClassVar[str] = "zoo request"
    LIMITS: ClassVar[dict] = dict(seeds=(1, 20), workers=(1, 64))
    CHOICES: ClassVar[dict] = dict(preset=preset_names)

    suite: str = ""
    archs: tuple = tuple(ARCHITECTURES)
    seeds: int = 1
    preset: str = "demo"
    tasks: tuple = ()
    workers: int = 1

    def validate(self, workspace=None) -> None:
        super().validate()
        parse_archs(self.archs)
        _check_suite(self.suite, workspace, self.tasks)


@dataclass(frozen=True)
class DistanceRequest(DistanceSettings):
    """The ``d[b, t]`` matrices of ``suite`` for each architecture of ``archs`` (zoo networks of ``preset``)."""

    WHAT: ClassVar[str] = "distance request"
    CHOICES: ClassVar[dict] = dict(metric=METRICS, preset=preset_names)

    suite: str = ""
    preset: str = "demo"

    def validate(self, workspace=None) -> None:
        super().validate()
        self.fisher.check_preset(self.preset)
        _check_suite(self.suite, workspace)

    def for_arch(self, arch: str) -> DistanceRequest:
        """The same request for one architecture."""
        return dataclasses.replace(self, archs=(arch,))


@dataclass(frozen=True)
class ClosestSettings(DistanceSettings):
    """How a target's closest learned tasks are found: the distance settings (averaged over ``archs`` and seeds),
    ``top`` (k closest tasks define the related space) and ``baselines`` (the learned tasks to choose from; empty:
    every other task of the suite)."""

    WHAT: ClassVar[str] = "closest-task settings"
    LIMITS: ClassVar[dict] = dict(DistanceSettings.LIMITS, top=(1, 50))

    archs: tuple = tuple(ARCHITECTURES)
    top: int = 1
    baselines: tuple = ()

    def distance_request(self, suite: str, preset: str) -> DistanceRequest:
        """The distance computation these settings stand for, on ``suite`` with ``preset``'s networks."""
        return DistanceRequest(suite=suite, preset=preset, **self.settings())


@dataclass(frozen=True)
class SearchRequest(Request):
    """Search an architecture for ``target`` (``"SUITE:TASK"``) in ``space`` with ``method``, then train the winner
    from scratch (``final_training``)."""

    WHAT: ClassVar[str] = "search request"
    LIMITS: ClassVar[dict] = dict(seed=(0, 2**31 - 1))
    CHOICES: ClassVar[dict] = dict(space=SPACES, method=METHODS, preset=preset_names)
    NESTED: ClassVar[dict] = dict(budget=SearchBudget, closest=ClosestSettings)

    target: str = ""
    space: str = "related"
    method: str = "fuse"
    preset: str = "demo"
    budget: SearchBudget = field(default_factory=SearchBudget)
    seed: int = 0
    closest: ClosestSettings = field(default_factory=ClosestSettings)
    final_training: bool = True

    def validate(self, workspace=None) -> None:
        super().validate()
        if self.space == "related":  # the closest-task settings are used only to build a related space
            self.closest.fisher.check_preset(self.preset)
        _check_target(self.target, workspace, self.closest.baselines)


@dataclass(frozen=True)
class CompareRequest(Request):
    """The source document's comparison table for ``target``: the hand-designed networks (zoo seed ``seed``),
    random search and FUSE on the standard space, FUSE on the related space."""

    WHAT: ClassVar[str] = "comparison request"
    LIMITS: ClassVar[dict] = dict(seed=(0, 2**31 - 1))
    CHOICES: ClassVar[dict] = dict(preset=preset_names)
    NESTED: ClassVar[dict] = dict(budget=SearchBudget, closest=ClosestSettings)

    target: str = ""
    preset: str = "demo"
    budget: SearchBudget = field(default_factory=SearchBudget)
    seed: int = 0
    closest: ClosestSettings = field(default_factory=ClosestSettings)

    def validate(self, workspace=None) -> None:
        super().validate()
        self.closest.fisher.check_preset(self.preset)
        _check_target(self.target, workspace, self.closest.baselines)

    def search(self, space: str, method: str) -> SearchRequest:
        """One of the comparison's searches."""
        return SearchRequest(target=self.target, space=space, method=method, preset=self.preset, budget=self.budget,
                             seed=self.seed, closest=self.closest)


@dataclass(frozen=True)
class ZooSearchRequest(Request):
    """Store a best genotype (FUSE, standard space) for each task of ``suite`` (``tasks``: a subset)."""

    WHAT: ClassVar[str] = "zoo search request"
    LIMITS: ClassVar[dict] = dict(seed=(0, 2**31 - 1))
    CHOICES: ClassVar[dict] = dict(preset=preset_names)
    NESTED: ClassVar[dict] = dict(budget=SearchBudget)

    suite: str = ""
    tasks: tuple = ()
    preset: str = "demo"
    budget: SearchBudget = field(default_factory=SearchBudget)
    seed: int = 0

    def validate(self, workspace=None) -> None:
        super().validate()
        _check_suite(self.suite, workspace, self.tasks)

    def genotype_search(self, task: str) -> SearchRequest:
        """The standard-space FUSE search (no final training) that stores ``task``'s genotype."""
        return SearchRequest(target=f"{self.suite}:{task}", space="standard", method="fuse", preset=self.preset,
                             budget=self.budget, seed=self.seed, final_training=False)


@dataclass(frozen=True)
class DemoRequest(Request):
    """The home page's demo: a zoo for ``suite``, its log-det distances, a FUSE search for ``target`` on the space
    of its closest task. Sized to show every stage within minutes on a 2-core CPU."""

    WHAT: ClassVar[str] = "demo request"
    CHOICES: ClassVar[dict] = dict(preset=preset_names)
    NESTED: ClassVar[dict] = dict(budget=SearchBudget)

    suite: str = "mnist4"
    target: str = "mnist-10class"
    archs: tuple = ("vgg16",)
    preset: str = "demo"
    budget: SearchBudget = field(default_factory=lambda: SearchBudget(candidates=3, rounds=1, epochs_per_round=0.5,
                                                                      final_epochs=1.0))

    def validate(self, workspace=None) -> None:
        super().validate()
        parse_archs(self.archs)
        _check_target(f"{self.suite}:{self.target}", workspace)

    def zoo(self) -> ZooRequest:
        return ZooRequest(suite=self.suite, archs=self.archs, seeds=1, preset=self.preset)

    def distances(self) -> DistanceRequest:
        return DistanceRequest(suite=self.suite, archs=self.archs, preset=self.preset)

    def search(self) -> SearchRequest:
        return SearchRequest(target=f"{self.suite}:{self.target}", space="related", method="fuse",
                             preset=self.preset, budget=self.budget,
                             closest=ClosestSettings(**dict(self.distances().settings(), archs=self.archs)))


# ---------------------------------------------------------------------------------------------- checks

def _check_suite(name: str, workspace, tasks: tuple = ()) -> None:
    """The suite exists (built-in, or ``custom`` with tasks in ``workspace``) and has ``tasks``. Without a
    workspace only the name's form is checked (the job runner checks again with its workspace before launching)."""
    if name not in SUITE_NAMES and name != CUSTOM_SUITE:
        raise TanasError(f"unknown suite {name!r}: choose one of {', '.join(SUITE_NAMES + (CUSTOM_SUITE,))}")
    if workspace is None:
        return
    suite = resolve_suite(name, workspace)
    for task in tasks:
        suite.task(task)


def _check_target(target: str, workspace, baselines: tuple = ()) -> None:
    suite_name, task_name = split_target(target)
    _check_suite(suite_name, workspace, (task_name, *baselines))
