"""One frozen request per operation: the only home of its defaults, its limits and its validation.

The CLI parses its arguments into these, the background jobs store ``request.to_dict()`` and rebuild the request
with ``from_dict`` (validated before the job is launched, so it cannot fail validation inside the job), and the app's
pages build them from widgets whose limits come from ``LIMITS``. Reading one request from a page widget to the
library call needs no dictionary of strings:

    request = DistanceRequest(suite="mnist4", archs=("vgg16",), fisher=FisherConfig(samples=256))
    request.validate(workspace)                   # TanasError naming the field, its range and the fix
    results = distance_matrices(request, RunContext(workspace))

The settings several requests share (``FisherConfig``, ``SearchBudget``, ``DistanceSettings``) and the ``Request``
base are in ``settings``; they are importable from here too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from .networks import ARCHITECTURES
from .settings import (HEADS, METHODS, METRICS, MIXTURES, PARAMS, REFERENCES, SPACES, VIEWS, WEIGHT_STEPS,
                       DistanceSettings, FisherConfig, Request, SearchBudget, parse_archs, parse_names, preset_names)
from .suites import CUSTOM_SUITE, SUITE_NAMES, resolve_suite, split_target
from .errors import TanasError

__all__ = ["HEADS", "METHODS", "METRICS", "MIXTURES", "PARAMS", "REFERENCES", "SPACES", "VIEWS", "WEIGHT_STEPS",
           "ClosestSettings", "CompareRequest", "DemoRequest", "DistanceRequest", "DistanceSettings", "FisherConfig",
           "Request", "SearchBudget", "SearchRequest", "ZooRequest", "ZooSearchRequest", "parse_archs", "parse_names",
           "preset_names", "split_target"]


# ---------------------------------------------------------------------------------------------- operations

@dataclass(frozen=True)
class ZooRequest(Request):
    """Train (or reuse) a network per task x architecture x seed of ``suite`` (``tasks``: a subset)."""

    WHAT: ClassVar[str] = "zoo request"
    LIMITS: ClassVar[dict] = dict(seeds=(1, 20), workers=(1, 64), replicates=(0, 10))
    CHOICES: ClassVar[dict] = dict(preset=preset_names)

    suite: str = ""
    archs: tuple = tuple(ARCHITECTURES)
    seeds: int = 1
    preset: str = "demo"
    tasks: tuple = ()
    workers: int = 1
    replicates: int = 0  # same-initialisation replicates per network (other data seeds): the distances' reference

    def validate(self, workspace=None) -> None:
        super().validate()
        parse_archs(self.archs)
        _check_suite(self.suite, workspace, self.tasks)


@dataclass(frozen=True)
class DistanceRequest(DistanceSettings):
    """The ``d[b, t]`` matrices of ``suite`` for each architecture of ``archs`` (zoo networks of ``preset``)."""

    WHAT: ClassVar[str] = "distance request"
    CHOICES: ClassVar[dict] = dict(DistanceSettings.CHOICES, preset=preset_names)

    suite: str = ""
    preset: str = "demo"

    def validate(self, workspace=None) -> None:
        super().validate()
        suite = _check_suite(self.suite, workspace)
        if suite is not None:  # the probe images (and, in the probe view, the data draws) of every task must hold M
            self.fisher.check_probe(suite.tasks, draws=self.view == "probe" and self.replicates > 0)

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
        """The ``DistanceRequest`` these settings stand for, on ``suite`` with ``preset``'s networks."""
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
        suite = _check_target(self.target, workspace, self.closest.baselines)
        if self.space == "related" and suite is not None:  # closest-task settings build a related space only
            self.closest.fisher.check_probe(suite.tasks)


@dataclass(frozen=True)
class CompareRequest(Request):
    """The source document's comparison table for ``target``: the hand-designed networks (zoo seed ``seed``),
    random search and FUSE on the standard space, FUSE on the related space; ``repeats`` times with seeds
    ``seed``, ``seed + 1``, ... (means with intervals and paired differences: ``Comparison.summary`` / ``paired``)."""

    WHAT: ClassVar[str] = "comparison request"
    LIMITS: ClassVar[dict] = dict(seed=(0, 2**31 - 1), repeats=(1, 20))
    CHOICES: ClassVar[dict] = dict(preset=preset_names)
    NESTED: ClassVar[dict] = dict(budget=SearchBudget, closest=ClosestSettings)

    target: str = ""
    preset: str = "demo"
    budget: SearchBudget = field(default_factory=SearchBudget)
    seed: int = 0
    closest: ClosestSettings = field(default_factory=ClosestSettings)
    repeats: int = 1  # independent search seeds (and zoo seeds of the hand-designed networks) per method

    def validate(self, workspace=None) -> None:
        super().validate()
        suite = _check_target(self.target, workspace, self.closest.baselines)
        if suite is not None:
            self.closest.fisher.check_probe(suite.tasks)

    def search(self, space: str, method: str, repeat: int = 0) -> SearchRequest:
        """One of the comparison's searches (repeat ``r``: search seed ``seed + r``)."""
        return SearchRequest(target=self.target, space=space, method=method, preset=self.preset, budget=self.budget,
                             seed=self.seed + repeat, closest=self.closest)


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
    """The home page's demo: a zoo for ``suite``, its distances (default metric), a FUSE search for ``target`` on the space
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
        """The zoo, with the replicate networks the distances' reference needs in the TA-NAS view (the probe view's
        reference draws other data, so it trains none)."""
        distances = self.distances()
        return ZooRequest(suite=self.suite, archs=self.archs, seeds=1, preset=self.preset,
                          replicates=distances.replicates if distances.view == "tanas" else 0)

    def distances(self) -> DistanceRequest:
        return DistanceRequest(suite=self.suite, archs=self.archs, preset=self.preset)

    def search(self) -> SearchRequest:
        return SearchRequest(target=f"{self.suite}:{self.target}", space="related", method="fuse",
                             preset=self.preset, budget=self.budget,
                             closest=ClosestSettings(**self.distances().settings()))


# ---------------------------------------------------------------------------------------------- checks

def _check_suite(name: str, workspace, tasks: tuple = ()):
    """The suite exists (built-in, or ``custom`` with tasks in ``workspace``) and has ``tasks``; returns it (``None``
    without a workspace: then only the name's form is checked, and the job runner checks again with its workspace
    before launching)."""
    if name not in SUITE_NAMES and name != CUSTOM_SUITE:
        raise TanasError(f"unknown suite {name!r}: choose one of {', '.join(SUITE_NAMES + (CUSTOM_SUITE,))}")
    if workspace is None:
        return None
    suite = resolve_suite(name, workspace)
    for task in tasks:
        suite.task(task)
    return suite


def _check_target(target: str, workspace, baselines: tuple = ()):
    """``_check_suite`` for a ``"SUITE:TASK"`` target and the chosen baselines; returns the suite (or ``None``)."""
    suite_name, task_name = split_target(target)
    return _check_suite(suite_name, workspace, (task_name, *baselines))
