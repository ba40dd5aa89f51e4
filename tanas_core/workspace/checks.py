"""What a request needs of a workspace, checked in one place: its suite exists (a custom suite has tasks saved), the
tasks and target it names are in that suite, and every task holds the probe images its Fishers need.

A request checks its own shape (``Request.validate()``); ``request.validate(workspace)`` adds these checks through
``Workspace.check``, so the requests stay a leaf that imports nothing of the method. Each operation checks once at its
entry (the library call, or the job runner before it launches a job).
"""
from __future__ import annotations

from tanas_core.data.probe_images import probe_capacity
from tanas_core.data.suites import Suite, resolve_suite, split_target
from tanas_core.errors import TanasError
from tanas_core.requests import (
    DemoRequest,
    DistanceRequest,
    FisherConfig,
    SearchRequest,
    ValidateRequest,
    ZooRequest,
    ZooSearchRequest,
)
from tanas_core.requests.operations import TargetSearch


def check_request(request, workspace) -> Suite | None:
    """``TanasError`` naming what ``workspace`` lacks for ``request``; returns the request's suite (``None`` for a
    request that names none)."""
    if isinstance(request, (ZooRequest, ZooSearchRequest)):
        return suite_with(request.suite, workspace, request.tasks)
    if isinstance(request, ValidateRequest):
        for view in request.views:
            suite = check_request(request.distance_request(request.metrics[0], view), workspace)
        return suite
    if isinstance(request, DistanceRequest):
        suite = suite_with(request.suite, workspace)
        # the probe images (and, in the probe view, the data draws) of every task must hold M
        check_probe(request.fisher, suite.tasks, draws=request.view == "probe" and request.replicates > 0)
        return suite
    if isinstance(request, TargetSearch):
        suite = target_suite(request.target, workspace, request.closest.baselines)
        if not isinstance(request, SearchRequest) or request.space == "related":  # a related space needs Fishers
            check_probe(request.closest.fisher, suite.tasks)
        return suite
    if isinstance(request, DemoRequest):
        return target_suite(f"{request.suite}:{request.target}", workspace)
    return None


def suite_with(name: str, workspace, tasks: tuple = ()) -> Suite:
    """The suite ``name`` (built-in, or ``custom`` with tasks in ``workspace``), having every task of ``tasks``."""
    suite = resolve_suite(name, workspace)
    for task in tasks:
        suite.task(task)
    return suite


def target_suite(target: str, workspace, baselines: tuple = ()) -> Suite:
    """``suite_with`` for a ``"SUITE:TASK"`` target and the chosen baselines."""
    suite_name, task_name = split_target(target)
    return suite_with(suite_name, workspace, (task_name, *baselines))


def check_probe(fisher: FisherConfig, tasks, draws: bool = False) -> None:
    """``TanasError`` when a task of ``tasks`` has fewer held-out probe images than M = ``fisher.samples`` (or, with
    ``draws``, fewer test images than M for its other data draws)."""
    for task in tasks:
        for draw, where in ((0, "held-out probe images"), (1, "test images for its data draws"))[:1 + draws]:
            available = probe_capacity(task, draw=draw)
            if fisher.samples > available:
                raise TanasError(f"{fisher.WHAT}: task {task.name!r} has {available} {where}, fewer than "
                                 f"M = {fisher.samples} images per Fisher; lower M to <= {available}")
