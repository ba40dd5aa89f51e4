"""The background job kinds: each pairs a request type with the library call that serves it.

A work function only translates: the request and the run context come in (progress, events and cancellation are the
context's), a small JSON result goes out; the work itself is the library's (zoo, task_distances, nas). The job
runner is given ``JOB_KINDS``; it never imports this module.
"""
from __future__ import annotations

from tanas_core.distances.matrices import across_architectures, distance_matrices
from tanas_core.distances.validation import validate_distances, verdict
from tanas_core.jobs.runner import JobKind, JobRunner
from tanas_core.requests import CompareRequest, DemoRequest, DistanceRequest, SearchRequest, ValidateRequest, ZooRequest
from tanas_core.search.comparison import compare
from tanas_core.search.nas import run_search
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.store import Workspace


def zoo_job(request: ZooRequest, context: RunContext) -> dict:
    """Train (or reuse) the networks -> ``{networks: [keys], count}``."""
    records = train_zoo(request, context)
    return dict(networks=[r.key for r in records], count=len(records))


def distances_job(request: DistanceRequest, context: RunContext) -> dict:
    """Compute the matrices (they are stored) -> ``{archs, seconds}``."""
    results = distance_matrices(request, context)
    return dict(archs=list(request.archs), seconds=sum(r.seconds for r in results))


def search_job(request: SearchRequest, context: RunContext) -> dict:
    """One search -> ``{run_id, status, test_accuracy}`` (the run id is also in the job's info from the start)."""
    record = run_search(request, context)
    return dict(run_id=record.run_id, status=record.status, test_accuracy=record.test_accuracy)


def compare_job(request: CompareRequest, context: RunContext) -> dict:
    """The comparison table (also stored as a ``comparison`` result) -> ``{rows, csv}``."""
    result = compare(request, context)
    return dict(rows=result.table_rows(), csv=result.csv)


def validate_job(request: ValidateRequest, context: RunContext) -> dict:
    """The validation report (stored as a ``validation`` result: the Distances page's verdict reads it) ->
    ``{suite, default_metric, verdicts: {row: "yes" | "no"}}``."""
    report = validate_distances(request, context)
    return dict(suite=report["suite"], default_metric=report["default_metric"],
                verdicts={name: verdict(report, name)[0] for name in report["metrics"]})


def demo_job(request: DemoRequest, context: RunContext) -> dict:
    """The home page's demo: a small zoo, its distances (default metric), their verdict (the smallest validation
    report that gives one), a FUSE search on the closest task's space; each a phase of one progress scale."""
    # phases sized by their measured share of the demo's time on a 2-core CPU, so the remaining-time estimate holds
    zoo, distances, report, search = (context.phase("1/4 zoo and replicates", 0.0, 0.2),
                                      context.phase("2/4 distances", 0.2, 0.3),
                                      context.phase("3/4 the verdict: does it beat its noise?", 0.3, 0.65),
                                      context.phase("4/4 FUSE, related space", 0.65, 1.0))
    train_zoo(request.zoo(), zoo)
    results = distance_matrices(request.distances(), distances)
    combined = results[0] if len(results) == 1 else across_architectures(results)
    validation = validate_distances(request.validation(), report)
    row = validation["default_metric"]
    record = run_search(request.search(), search)
    return dict(suite=request.suite, target=request.target, closest=combined.closest(request.target, 1),
                verdict=dict(row=row, answer=verdict(validation, row)[0]),
                run_id=record.run_id, test_accuracy=record.test_accuracy)


JOB_KINDS: dict[str, JobKind] = {
    "zoo": JobKind(ZooRequest, zoo_job),
    "distances": JobKind(DistanceRequest, distances_job),
    "search": JobKind(SearchRequest, search_job),
    "compare": JobKind(CompareRequest, compare_job),
    "demo": JobKind(DemoRequest, demo_job),
    "validate": JobKind(ValidateRequest, validate_job),
}


def job_runner(workspace: Workspace) -> JobRunner:
    """A runner for every job kind of the app."""
    return JobRunner(workspace, JOB_KINDS)
