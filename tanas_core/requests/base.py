"""The building blocks of requests: the ``Request`` base (JSON round trip, limits, choices, validation) and the
settings that several operations share (``FisherConfig``, ``SearchBudget``, ``DistanceSettings``).
The operations' requests are in ``operations``.

Requests are a leaf: they import only ``errors`` and ``registry``. Their ``validate()`` checks the shape of a request
(types, limits, choices, names against the registries); what needs a workspace (a suite's tasks, a target, the
probe images a Fisher needs) is checked by ``workspace.checks``.

``from_dict`` refuses unknown fields, treats a missing or ``None`` field as its default, and turns JSON numbers and
lists back into the field's type, so ``to_dict`` -> ``from_dict`` is the identity and equal requests have equal keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import ClassVar, Iterable

from tanas_core.errors import TanasError
from tanas_core.registry import ARCHITECTURES, METRICS, VIEWS

# The workspace's own suite: its tasks are saved in a workspace, not registered (``data.suites.resolve_suite``).
CUSTOM_SUITE = "custom"
SPACES = ("related", "standard")
METHODS = ("fuse", "random")
HEADS = ("refit", "own")
# FUSE's relaxed output (equation 16) mixes class probabilities or logits; its weight step (equation 17) trains each
# candidate on its own loss or, literally, the relaxed loss (see ``fuse``).
MIXTURES = ("probs", "logits")
WEIGHT_STEPS = ("independent", "relaxed")
PARAMS = ("backbone", "all")
# The twin a column's reference r[t] compares with: "view" the view's own (TA-NAS: retrained, probe: redraw);
# "redraw": the same network on another draw of t's data; "retrained": t's network retrained from the same initial
# weights on other data (in the probe view, a retrained probe network).
REFERENCES = ("view", "redraw", "retrained")


def parse_archs(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"vgg16,resnet18"`` or a list -> validated architecture names (``TanasError`` for unknown ones)."""
    names = [a.strip() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown or not names:
        raise TanasError(f"unknown architecture(s) {unknown or names}: choose from {', '.join(ARCHITECTURES)}")
    return tuple(names)


def split_target(text: str) -> tuple[str, str]:
    """``"SUITE:TASK"`` -> ``(suite, task)``; ``TanasError`` for anything else."""
    if not isinstance(text, str) or text.count(":") != 1 or not all(p.strip() for p in text.split(":")):
        raise TanasError(f"target must look like SUITE:TASK (e.g. ld8:mnist-10class), got {text!r}")
    suite, task = (part.strip() for part in text.split(":"))
    return suite, task


def parse_names(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"a,b"`` or a list -> a tuple of stripped, non-empty names."""
    if not text:
        return ()
    return tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip())


def _coerce(request_type: type, name: str, type_name: str, value, stored: bool = False):
    """A JSON / CLI value as the field's type (``int`` stays exact, ``float`` always a float, lists as tuples);
    nested settings read like their parent (``stored``: as an earlier version stored them, ``Request.from_stored``)."""
    nested = request_type.NESTED.get(name)
    if nested is not None:
        return value if isinstance(value, nested) else (nested.from_stored if stored else nested.from_dict)(value)
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
        kind = "an integer" if type_name.startswith("int") else "a number"
        raise TanasError(f"{request_type.WHAT}: {name} needs {kind}, got {value!r}") from None
    return value


class Request:
    """Shared behaviour of the request types (all frozen dataclasses)."""

    WHAT: ClassVar[str] = "request"
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {}  # field -> inclusive (low, high)
    CHOICES: ClassVar[dict] = {}  # field -> allowed values, or a function giving them (presets can be added)
    NESTED: ClassVar[dict[str, type]] = {}
    # Fields added after records were first stored -> the value the records stored before them ran with (a record
    # without the field is read so, whatever today's default is).
    ADDED_AT: ClassVar[dict] = {}
    # Fields an earlier version had and this one dropped (they never changed what ran): a stored request that
    # still has them (a job to relaunch) is read without them.
    RETIRED: ClassVar[tuple] = ()

    @classmethod
    def from_dict(cls, params: dict | None):
        """A validated request from a JSON object; unknown fields are refused, missing / ``None`` ones default."""
        if params is not None and not isinstance(params, dict):
            raise TanasError(f"{cls.WHAT}: expected a JSON object, got {type(params).__name__}")
        known = {f.name: f for f in fields(cls)}
        params = {name: value for name, value in (params or {}).items() if name not in cls.RETIRED}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TanasError(f"{cls.WHAT}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values = {name: _coerce(cls, name, str(known[name].type), value)
                  for name, value in params.items() if value is not None}
        try:
            request = cls(**values)
        except TypeError as error:
            raise TanasError(f"{cls.WHAT}: {error}") from None
        request.validate()
        return request

    @classmethod
    def from_stored(cls, params: dict | None):
        """A request as an earlier version stored it (a search record's budget): fields this version does not know
        are dropped, missing ones take the value they ran with (``ADDED_AT``, else today's default), and today's
        limits are not applied (a record says what ran)."""
        known = {f.name: f for f in fields(cls)}
        stored = {name: _coerce(cls, name, str(known[name].type), value, stored=True)
                  for name, value in (params or {}).items() if name in known and value is not None}
        return cls(**{**cls.ADDED_AT, **stored})

    def values_of(self, request_type: type[Request]) -> dict:
        """This object's values of ``request_type``'s fields (a base class of its own): the part of it another
        request is built from."""
        return {f.name: getattr(self, f.name) for f in fields(request_type)}

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

    ``samples``: M, held-out probe images of ``X_t`` the Fisher averages over (``tasks.make_probe``: no network
    trained on them, no head was fitted on them; rounded down to a multiple of the task's outputs);
    ``head_samples``: training images of ``X_t`` the refitted head is fitted on (the first of its training split,
    so at most the split's size); ``head_weight_decay``: the L2 penalty of that fit (per squared weight, added to the
    mean cross-entropy); ``head``: ``"refit"`` or ``"own"``;
    ``params``: ``"backbone"`` or ``"all"``; ``projection_dim``: CountSketch width for full-matrix metrics (``None``:
    exact); ``batch_size``: samples per per-sample-gradient chunk; ``chunks``: pieces of the probe images whose
    diagonals are kept apart (their weighted mean is the Fisher; resampling them is the bootstrap over images).
    """

    WHAT: ClassVar[str] = "Fisher settings"
    LIMITS: ClassVar[dict] = dict(samples=(2, 8192), head_samples=(2, 65536), batch_size=(1, 4096),
                                  projection_dim=(1, 100_000_000), chunks=(1, 64), head_weight_decay=(0.0, 100.0))
    CHOICES: ClassVar[dict] = dict(head=HEADS, params=PARAMS)

    # M = 800: the most the CIFAR-10 pack's bird / frog / horse / else task holds (200 held-out images per class), so
    # every Fisher of `ld8` can use it; the Fisher images are a large part of the probe view's noise
    # (docs/results/history.md, "Why the defaults are what they are").
    samples: int = 800
    # The refitted head: every training image of the demo split (2,000; the first 2,048 on larger presets) and a
    # strong L2 penalty. On separable features a weakly penalised logistic fit is set by a few boundary images and
    # changes with every draw of them; a strong penalty makes the head a smooth function of the class means (the
    # sweep that chose 0.3: docs/results/history.md).
    head_samples: int = 2048
    head: str = "refit"
    params: str = "backbone"
    projection_dim: int | None = None
    batch_size: int = 128
    chunks: int = 8  # diagonals are stored per piece of the probe images: the bootstrap resamples the pieces
    head_weight_decay: float = 0.3

    # Added after Fishers were first stored (1e-4 before it was a setting): also left out of the store keys at that
    # value, so what a workspace holds stays valid.
    ADDED_AT: ClassVar[dict] = dict(head_weight_decay=1e-4)

    def identity(self) -> dict:
        """The settings as they enter store keys (``ADDED_AT`` fields left out at the value they had before)."""
        return {name: value for name, value in vars(self).items() if self.ADDED_AT.get(name, object()) != value}


@dataclass(frozen=True)
class SearchBudget(Request):
    """What a search may spend, in epochs of the training split (wall seconds are measured and reported).

    FUSE: ``rounds`` rounds of ``candidates`` candidates, at most ``epochs_per_round`` epochs of weight steps per
    round (fewer when alpha converges: max change of softmax(alpha) < ``tolerance`` over ``window`` steps, checked
    after ``min_steps``, and the leader's validation accuracy over those steps beats the runner-up's by two standard
    errors). Random search: ``random_candidates`` genotypes trained ``random_epochs`` each.
    ``final_epochs``: training of the chosen genotype from scratch. ``max_seconds``: optional wall-clock cap on the
    search itself (checked between steps; the search ends with the best candidate so far). ``mixture`` and
    ``weight_step``: how FUSE relaxes and trains its candidates (``MIXTURES``, ``WEIGHT_STEPS``; ``fuse`` says why
    the defaults).
    """

    WHAT: ClassVar[str] = "search budget"
    CHOICES: ClassVar[dict] = dict(mixture=MIXTURES, weight_step=WEIGHT_STEPS)
    # At least one epoch of final training: below it a winner is near chance on every demo task, and its test
    # accuracy says nothing about its architecture (docs/search.md: the smallest budget, measured).
    LIMITS: ClassVar[dict] = dict(candidates=(2, 32), rounds=(1, 100), epochs_per_round=(0.01, 1000.0),
                                  random_candidates=(1, 10000), random_epochs=(0.01, 1000.0),
                                  final_epochs=(1.0, 1000.0), warmup=(0.0, 0.95), alpha_lr=(1e-6, 10.0),
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
    mixture: str = "probs"
    weight_step: str = "independent"

    @property
    def effort(self) -> float:
        """Candidate-epochs a FUSE search with this budget may spend (to rank stored genotypes by effort)."""
        return self.candidates * self.rounds * self.epochs_per_round


@dataclass(frozen=True)
class MeasurementSettings(Request):
    """What every distance of one measurement shares, whichever metric, view and reference: architectures
    (matrices averaged over them), ``seeds`` zoo seeds 0..K-1, ``sigma`` (log-det only), the Fisher settings,
    ``workers`` (local processes that train missing zoo networks and compute Fishers), ``replicates`` (K replicates
    per task and seed, the twins whose distance to the task is the reference ``r[t]``) and ``bootstrap`` (resamples
    of the probe images). A report over many metrics and views (``ValidateRequest``) holds these; one distance
    (``DistanceSettings``) adds its metric, view and reference."""

    WHAT: ClassVar[str] = "distance settings"
    LIMITS: ClassVar[dict] = dict(seeds=(1, 20), sigma=(1e-12, 1e6), workers=(1, 64), replicates=(0, 10),
                                  bootstrap=(0, 1000))
    NESTED: ClassVar[dict] = dict(fisher=FisherConfig)

    archs: tuple = ("vgg16",)
    seeds: int = 1
    sigma: float = 1e-3
    fisher: FisherConfig = field(default_factory=FisherConfig)
    workers: int = 1
    # Same-initialisation replicates per task and seed: the reference r[t] every column must beat.
    replicates: int = 2
    # Bootstrap samples over the probe images (diagonal metrics): intervals, rank frequency, paired differences.
    bootstrap: int = 40

    def validate(self) -> None:
        super().validate()
        parse_archs(self.archs)

    def measurement(self) -> dict:
        """The ``MeasurementSettings`` fields of this object (to build another request from them)."""
        return self.values_of(MeasurementSettings)


@dataclass(frozen=True)
class DistanceSettings(MeasurementSettings):
    """How one kind of task distance is computed: the shared ``MeasurementSettings``, the ``metric`` (eq. 5
    ``logdet``, eq. 8 ``frechet``, eq. 7 ``frechet-full``, or the extensions ``logdet-scaled``, ``frechet-sorted``,
    ``frechet-mass``), the ``view`` (``VIEWS``: the source's TA-NAS matrices, or the common probe network) and the
    ``reference`` its twins come from (``REFERENCES``)."""

    CHOICES: ClassVar[dict] = dict(metric=METRICS, view=VIEWS, reference=REFERENCES)
    ADDED_AT: ClassVar[dict] = dict(reference="view")

    # The row the validate-distances reports of ld8 and mnist4 support best by their own rule (identity test, then
    # signal/noise; docs/results/history.md): Frechet eq. 8 in the common-probe view. The source's TA-NAS
    # view stays one choice away (``view="tanas"``).
    metric: str = "frechet"
    view: str = "probe"
    reference: str = "view"

    @property
    def twin_kind(self) -> str:
        """``"redraw"`` or ``"retrained"``: the reference this request's r[t] uses (``"view"`` resolved)."""
        return VIEWS[self.view].own_reference if self.reference == "view" else self.reference

    def validate(self) -> None:
        super().validate()
        if self.view == "probe" and self.fisher.params != "backbone":
            raise TanasError(f"{self.WHAT}: the common-probe view compares Fishers of heads refitted to different "
                             "tasks, so it needs Fisher params 'backbone' (the head differs per task); got "
                             f"{self.fisher.params!r}")

    def settings(self) -> dict:
        """The ``DistanceSettings`` fields of this object (to build another request from them)."""
        return self.values_of(DistanceSettings)

    def fisher_count(self, tasks: int) -> int:
        """Distinct Fishers one architecture needs with ``tasks`` tasks (progress, cost notes): the view's Fishers
        per network (T in the TA-NAS view, 1 in the probe's) for each seed's T networks, and their twins."""
        return self.seeds * tasks * (VIEWS[self.view].fishers_per_network(tasks) + self.replicates)
