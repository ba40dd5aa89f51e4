"""What a request needs of a workspace, checked in one place: its suite exists (a custom suite has tasks saved), the
tasks and target it names are in that suite, and every task holds the probe images its Fishers need.

A request checks its own shape (``Request.validate()``); ``request.validate(workspace)`` adds these checks through
``Workspace.check``, so the requests stay a leaf that imports nothing of the method. Each operation checks once at its
entry (the library call, or the job runner before it launches a job).
"""
from __future__ import annotations

from tanas_core.data.probe_images import MIN_PROBE_IMAGES, balanced, probe_count
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
        check_probe(request.fisher, suite.tasks)
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


def check_probe(fisher: FisherConfig, tasks) -> None:
    """``TanasError`` when a task of ``tasks`` holds fewer Fisher images (``probe_count``: M, or fewer where the
    task's held-out probe or test images hold fewer) than ``MIN_PROBE_IMAGES`` and than M asks (a small M asked for
    is the caller's choice)."""
    for task in tasks:
        count = probe_count(task, fisher.samples)
        if count < min(MIN_PROBE_IMAGES, balanced(task, fisher.samples)):
            raise TanasError(f"{fisher.WHAT}: task {task.name!r} holds {count} Fisher images (its scarcest output "
                             f"has {count // task.num_outputs} held-out probe or test images), fewer than the "
                             f"{MIN_PROBE_IMAGES} a Fisher needs to compare tasks; give that output more classes or "
                             "choose a dataset with more images")
