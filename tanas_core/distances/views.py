"""The views of a task distance: which networks embed the tasks, on whose images, and what the reference compares.

``d[b, t]`` (row = baseline ``b``, column = target ``t``) compares a Fisher of baseline ``b`` with ``F[t, t]``. A
view decides the rest, and registers it in ``registry.VIEWS``:

* ``tanas`` (the source's): ``F[b, t]`` is ``b``'s own network on ``t``'s images, so ``d[b, t]`` and ``d[t, b]``
  differ (asymmetric). Its own reference ``r[t]`` places ``t``'s same-initialisation replicates (same initial
  weights, other data) as baselines of column ``t``.
* ``probe`` (Task2Vec's design): one common probe network per architecture and seed, trained on every class of the
  suite's datasets, embeds every task; each Fisher is taken on its own task's images, so ``d[b, t] = d[t, b]`` for a
  symmetric metric. Its own reference compares other draws of ``t``'s data under the same probe network (head
  fitted on other training images, Fisher on test images).

Either view can be judged under either reference (``DistanceSettings.reference``): a *redraw* twin tests the
estimate's precision, a *retrained* twin the training path's noise too; the validation report shows both, so the
views are compared under matched references.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tanas_core.data.suites import Suite
from tanas_core.data.tasks import Task
from tanas_core.registry import VIEWS
from tanas_core.requests import DistanceRequest, ZooRequest
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.context import RunContext

Entry = tuple  # (network record, task whose images its Fisher is taken on[, data draw of that task's images])

# What a twin of target t is, per reference (``DistanceSettings.reference``): the reference r[t] is its distance.
REFERENCE_TEXT = {
    "redraw": "another draw of t's data under the same network (its head fitted on other training images, its "
              "Fisher on test images)",
    "retrained": "t's network retrained from the same initial weights on other data (another data draw and batch "
                 "order)",
}


@dataclass(frozen=True)
class View:
    """One view. ``networks(request, suite, context) -> {(task, seed, replicate): record}``: the networks it
    embeds tasks with, and the retrained twins when the request's reference asks for them (training what is
    missing); ``fishers_per_network(tasks)``: the Fishers each network gives a matrix; ``baseline_images(tasks, b,
    t) -> Task``: whose images baseline ``b``'s Fisher of column ``t`` is taken on; ``own_reference``: the twin the
    view was designed with (``"redraw"`` or ``"retrained"``); ``symmetric``: ``d[b, t] = d[t, b]`` under a
    symmetric metric; ``key``: what it adds to a stored result's key (empty for the view results were first stored
    under)."""

    name: str
    label: str
    own_reference: str
    symmetric: bool
    networks: Callable[[DistanceRequest, Suite, RunContext], dict]
    fishers_per_network: Callable[[int], int]
    baseline_images: Callable[[list, int, int], Task]
    key: dict = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """The view's own twin, in words."""
        return REFERENCE_TEXT[self.own_reference]


def register_view(view: View) -> View:
    """Add ``view`` to ``registry.VIEWS`` under its name (``TanasError`` if the name is taken)."""
    return VIEWS.register(view.name, view)


def get_view(name: str) -> View:
    """The registered view ``name`` (``TanasError`` naming the registered ones otherwise)."""
    return VIEWS[name]


def twin(request: DistanceRequest, networks: dict, task: Task, seed: int, replicate: int) -> Entry:
    """The Fisher entry of ``task``'s twin number ``replicate`` >= 1 for seed ``seed`` under ``request``'s reference:
    a redraw is the task's own network on data draw ``replicate``; a retrained twin is network ``replicate`` of
    ``networks`` (the view trained it) on the task's probe images."""
    if request.twin_kind == "redraw":
        return networks[(task.name, seed, 0)], task, replicate
    return networks[(task.name, seed, replicate)], task


def reference_text(request: DistanceRequest) -> str:
    """What a twin of t is under ``request``'s reference, in words."""
    return REFERENCE_TEXT[request.twin_kind]


def _retrained_twins(request: DistanceRequest) -> int:
    """How many retrained twins per task and seed the request's reference needs (0 for redraws)."""
    return request.replicates if request.twin_kind == "retrained" else 0


def _networks(request: DistanceRequest, networks: str) -> ZooRequest:
    """The ``ZooRequest`` of a view's networks (``"tasks"`` or ``"probe"``) for ``request``'s first architecture,
    with the same-initialisation replicates its reference needs."""
    return ZooRequest(suite=request.suite, archs=(request.archs[0],), seeds=request.seeds, preset=request.preset,
                      workers=request.workers, replicates=_retrained_twins(request), networks=networks)


def _zoo_networks(request: DistanceRequest, suite: Suite, context: RunContext) -> dict:
    """The zoo networks of every task and seed, with their same-initialisation replicates when retrained twins are
    the reference."""
    return {(r.task, r.seed, r.replicate): r for r in train_zoo(_networks(request, "tasks"), context)}


def _probe_networks(request: DistanceRequest, suite: Suite, context: RunContext) -> dict:
    """The common probe network of each seed for every task, with its retrained replicates (same initial weights,
    other data) when retrained twins are the reference."""
    probes = train_zoo(_networks(request, "probe"), context)
    return {(task.name, probe.seed, probe.replicate): probe for probe in probes for task in suite.tasks}


register_view(View(
    name="tanas", label="TA-NAS (the source's)", own_reference="retrained",
    symmetric=False, networks=_zoo_networks, fishers_per_network=lambda tasks: tasks,
    baseline_images=lambda tasks, b, t: tasks[t]))
register_view(View(
    name="probe", label="common probe (Task2Vec-style)", own_reference="redraw",
    symmetric=True, networks=_probe_networks, fishers_per_network=lambda tasks: 1,
    baseline_images=lambda tasks, b, t: tasks[b],
    key=dict(view="probe", reference="data draws")))
