"""Task-aware NAS end to end: closest tasks -> related space -> FUSE / random search -> the comparison table.

Everything here reads and writes the workspace store: each learned task's best genotype (a standard-space FUSE
search, the ``zoo search`` step), each search run (``run_search``: its live event stream ``search:<run id>`` and its
``SearchRecord``), and each comparison table (``compare``: a ``Comparison``, also exported as CSV). A repeated request
with the same configuration is read from the store. The target's test split is read once, after the search, to
evaluate the winner trained from scratch. ``preview_closest`` and ``preview_related_space`` answer the same questions
from the store only, for pages that must not compute. The comparison table of the methods is in ``comparison``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from tanas_core.data.suites import Suite, resolve_suite, resolve_target, split_target
from tanas_core.data.tasks import Task, make_splits
from tanas_core.distances.matrices import across_architectures, distance_matrices
from tanas_core.distances.stored import stored_distances
from tanas_core.errors import Cancelled, TanasError
from tanas_core.networks import count_parameters
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import ClosestSettings, SearchBudget, SearchRequest, ZooSearchRequest
from tanas_core.search.cells import cell_network
from tanas_core.search.fuse import SearchOutcome, fuse
from tanas_core.search.random_search import random_search
from tanas_core.search.space import Genotype, SearchSpace, related_space, standard_space
from tanas_core.training.trainer import Preset, get_preset, train_model
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import SearchRecord
from tanas_core.workspace.store import ArtifactRef, Workspace, config_key

__all__ = ["ClosestSettings", "RelatedPreview", "SearchRecord", "best_stored_genotype", "closest_tasks", "get_search",
           "preview_closest", "preview_related_space", "run_search", "search_events", "zoo_search"]


# ---------------------------------------------------------------------------------------------- closest tasks

def _rank(results, target: Task, suite: Suite, settings: ClosestSettings, every: bool = False) -> list[dict]:
    """The ``settings.top`` closest allowed baselines of ``target`` in the (architecture-averaged) results (``every``:
    all of them, closest first)."""
    names = [t.name for t in suite.tasks]
    unknown = [b for b in settings.baselines if b not in names]
    if unknown:
        raise TanasError(f"baseline(s) {unknown} are not tasks of suite {suite.name!r}: {', '.join(names)}")
    allowed = [b for b in (settings.baselines or names) if b != target.name]
    if not allowed:
        raise TanasError(f"choose at least one baseline other than the target {target.name!r}")
    if not 1 <= settings.top <= len(allowed):
        raise TanasError(f"top must be in 1..{len(allowed)} for {len(allowed)} baseline(s), got {settings.top}")
    combined = results[0] if len(results) == 1 else across_architectures(results)
    # ranked as the distance report ranks: how often each baseline is the closest over architectures x seeds x
    # bootstrap resamples (the mean distance breaks ties), with its interval and the baselines tied with the first
    frequency = combined.rank_frequency(target.name)
    ranking = sorted(combined.closest(target.name, len(names) - 1),
                     key=lambda row: (-frequency[row["baseline"]], row["distance"]))
    ties = combined.not_separable(target.name)
    rows = []
    for row in (row for row in ranking if row["baseline"] in allowed):
        low, high = combined.interval(row["baseline"], target.name)
        rows.append(dict(row, rank_frequency=frequency[row["baseline"]], interval_low=low, interval_high=high,
                         tied_with_closest=row["baseline"] in ties))
    return rows if every else rows[:settings.top]


def closest_tasks(request: SearchRequest, context: RunContext, every: bool = False) -> list[dict]:
    """The ``request.closest.top`` baselines closest to the request's target (``every``: every allowed baseline,
    closest first), among ``closest.baselines`` when given,
    ranked by how often each is the closest over architectures x seeds x bootstrap resamples (then by mean distance):
    ``[{baseline, distance, std, per_seed, rank_frequency, interval_low, interval_high, tied_with_closest}]``.
    Distances come from the store when cached; missing ones are computed (context's backend)."""
    suite, target = resolve_target(request.target, context.workspace)
    distances = request.closest.distance_request(suite.name, request.preset)
    return _rank(distance_matrices(distances, context), target, suite, request.closest, every)


def preview_closest(workspace: Workspace, request: SearchRequest) -> list[dict] | None:
    """``closest_tasks`` from the store only: ``None`` when any of its distance matrices is not stored yet."""
    suite, target = resolve_target(request.target, workspace)
    results = stored_distances(workspace, request.closest.distance_request(suite.name, request.preset))
    if any(result is None for result in results):
        return None
    return _rank(results, target, suite, request.closest)


# ---------------------------------------------------------------------------------------------- genotypes

def best_stored_genotype(workspace: Workspace, suite: Suite, task: Task,
                         preset: str) -> tuple[Genotype, SearchRecord] | None:
    """The best genotype stored for ``task`` by any finished standard-space FUSE search of ``preset``, whatever
    budget produced it: the search that spent the most (candidate-epochs), the newest on a tie; ``None`` if none."""
    found = []
    for payload in workspace.list_results("search"):
        record = SearchRecord.from_payload(payload) if "run_id" in payload else None
        if (record is None or not record.done or record.genotype is None or record.suite != suite.name
                or record.target != task.name or record.method != "fuse" or record.preset != preset
                or record.space.get("name") != "standard"):
            continue
        if record.target_fingerprint != task.fingerprint():
            continue
        found.append((SearchBudget.from_stored(record.budget).effort, record.finished_at or 0.0, record))
    if not found:
        return None
    record = max(found, key=lambda item: item[:2])[2]
    return Genotype.from_json(record.genotype), record


def task_genotype(request: SearchRequest, context: RunContext, task_name: str) -> Genotype:
    """The best genotype of a learned task: the best stored one (any budget), else a FUSE search on the standard
    space over its training / validation splits with the request's budget, stored (the ``zoo search`` step)."""
    suite, task = resolve_target(f"{split_target(request.target)[0]}:{task_name}", context.workspace)
    stored = best_stored_genotype(context.workspace, suite, task, request.preset)
    if stored is not None:
        context.progress(f"stored genotype of {task_name} (run {stored[1].run_id})", 1.0)
        return stored[0]
    search = SearchRequest(target=f"{suite.name}:{task_name}", space="standard", method="fuse",
                           preset=request.preset, budget=request.budget, seed=request.seed, final_training=False)
    return Genotype.from_json(run_search(search, context).genotype)


@dataclass
class RelatedPreview:
    """What a related-space search would use, from the store: the closest task(s), each one's stored genotype and
    the search record (budget) it came from (``None`` when not searched yet), and the space (``None`` while a
    genotype is missing)."""

    closest: list[dict]
    genotypes: dict
    records: dict
    space: SearchSpace | None

    @property
    def missing(self) -> list[str]:
        return [name for name, genotype in self.genotypes.items() if genotype is None]

    def budgets(self) -> dict:
        """Per closest task, the ``SearchBudget`` that produced its stored genotype (``None``: not searched)."""
        return {name: SearchBudget.from_stored(record.budget) if record else None
                for name, record in self.records.items()}


def preview_related_space(workspace: Workspace, request: SearchRequest) -> RelatedPreview | None:
    """The related space of ``request`` from the store only; ``None`` when its distances are not stored yet."""
    closest = preview_closest(workspace, request)
    if closest is None:
        return None
    suite, _ = resolve_target(request.target, workspace)
    genotypes, records = {}, {}
    for row in closest:
        stored = best_stored_genotype(workspace, suite, suite.task(row["baseline"]), request.preset)
        genotypes[row["baseline"]], records[row["baseline"]] = stored if stored else (None, None)
    space = None if None in genotypes.values() else related_space(list(genotypes.items()))
    return RelatedPreview(closest, genotypes, records, space)


def build_space(request: SearchRequest, context: RunContext) -> SearchSpace:
    """The standard space, or the related space of the closest baselines' best genotypes (searched first when none
    is stored; each such sub-search is its own phase of the progress)."""
    if request.space == "standard":
        return standard_space()
    nearest = closest_tasks(request, context.phase("closest tasks", 0.0, 0.4))
    chosen = []
    for index, row in enumerate(nearest):
        step = context.phase(f"genotype of {row['baseline']}", 0.4 + 0.6 * index / len(nearest),
                             0.4 + 0.6 * (index + 1) / len(nearest))
        chosen.append((row["baseline"], task_genotype(request, step, row["baseline"])))
    return related_space(chosen)


# ---------------------------------------------------------------------------------------------- search runs

def search_key(suite: Suite, target: Task, space: SearchSpace, method: str, preset: Preset, budget: SearchBudget,
               seed: int, final_training: bool) -> str:
    """Configuration hash of a search run (its id)."""
    return config_key(dict(kind="search", suite=suite.name, target=target.fingerprint(), spec=vars(suite.spec),
                           space=space.describe(), method=method, preset=preset.to_dict(), budget=budget.to_dict(),
                           seed=seed, final=final_training))


def get_search(workspace: Workspace, run_id: str) -> SearchRecord | None:
    """The stored record of search ``run_id``, or ``None``."""
    stored = workspace.get_result("search", run_id)
    return SearchRecord.from_payload(stored[0]) if stored else None


def _phases(request: SearchRequest) -> dict[str, tuple[float, float]]:
    """How a search's progress scale is shared: building the related space, the search, the winner's training."""
    space_end = 0.3 if request.space == "related" else 0.0
    search_end = 0.85 if request.final_training else 1.0
    return {"related space": (0.0, space_end), "search": (space_end, search_end), "winner": (search_end, 1.0)}


def run_search(request: SearchRequest, context: RunContext, space: SearchSpace | None = None) -> SearchRecord:
    """Search ``request.space`` for ``request.target`` with ``request.method`` and (``final_training``) train the
    winner from scratch; returns the stored ``SearchRecord``. ``space``: a ready ``SearchSpace`` to search instead
    of the request's (e.g. a small one in tests).

    Events go to ``context.emit`` (first ``{type: "run_started", run_id}``) and to the store stream
    ``search:<run_id>``. A cancel keeps the partial history (record status ``"stopped"``) and raises ``Cancelled``.
    A finished run with the same configuration is returned from the store. The context's backend decides where the
    closest-task distances and random-search candidates run (FUSE trains its candidates together, here).
    """
    workspace = context.workspace
    request.validate(workspace)
    suite, target = resolve_target(request.target, workspace)
    preset = get_preset(request.preset)
    resolve_device(context.device)
    phases = _phases(request)
    space = space or build_space(request, context.phase("related space", *phases["related space"]))
    run_id = search_key(suite, target, space, request.method, preset, request.budget, request.seed,
                        request.final_training)
    stored = get_search(workspace, run_id)
    if stored is not None and stored.done:
        context.emit(dict(type="run_started", run_id=run_id))  # a page follows the stored run like a live one
        return stored
    record = SearchRecord(run_id=run_id, suite=suite.name, target=target.name, method=request.method,
                          space=space.describe(), status="running", preset=preset.name, budget=request.budget.to_dict(),
                          seed=request.seed, target_fingerprint=target.fingerprint(),
                          final_training=request.final_training, started_at=time.time())
    workspace.put_result("search", run_id, record.to_payload())
    stream = f"search:{run_id}"
    workspace.clear_events(stream)
    context.emit(dict(type="run_started", run_id=run_id))
    events = context.with_events(lambda event: workspace.append_event(stream, event))
    # Only the training and validation splits reach the search: the test split is not even built until the end.
    splits = make_splits(target, preset.sizes, 0, suite.spec)
    outcome = _search(request, events.phase(f"{request.method} search", *phases["search"]), space, splits, record)
    _record_outcome(record, outcome)
    if outcome.status == "done" and outcome.best is not None:
        _train_winner(request, events.phase("training the winner", *phases["winner"]), outcome.best, splits, record)
    return _finish(workspace, events, record, outcome)


def _search(request: SearchRequest, context: RunContext, space: SearchSpace, splits, record: SearchRecord):
    preset, target = get_preset(request.preset), splits.task
    train, val = splits.tensors("train"), splits.tensors("val")
    try:
        if request.method == "fuse":
            return fuse(space, train, val, target.num_outputs, preset, request.budget, request.seed, context)
        return random_search(space, train, val, target.num_outputs, preset, request.budget, request.seed, context)
    except Exception as error:
        record.status, record.error = "failed", str(error)
        context.workspace.put_result("search", record.run_id, record.to_payload())
        raise


def _record_outcome(record: SearchRecord, outcome: SearchOutcome) -> None:
    record.status, record.ended = outcome.status, outcome.ended
    if outcome.status == "time limit":
        limit = record.budget.get("max_seconds")
        record.error = (f"the time limit of {limit:g} s passed before the first {outcome.method} round (or "
                        "candidate) finished, so there is no winner; raise max_seconds or shrink the round "
                        "(epochs_per_round, candidates)")
    record.search_seconds, record.device = outcome.seconds, outcome.device
    record.genotype = outcome.best.to_json() if outcome.best else None
    record.genotype_text = str(outcome.best) if outcome.best else None
    if outcome.rounds is not None:
        record.rounds = [dict(candidates=[g.to_json() for g in r.candidates], alpha=r.alpha, weights=r.weights,
                              steps=r.steps, converged=r.converged, winner=r.winner, decision=r.decision)
                         for r in outcome.rounds]
    if outcome.evaluated is not None:
        record.evaluated = outcome.evaluated


def _train_winner(request: SearchRequest, context: RunContext, best: Genotype, splits, record: SearchRecord) -> None:
    """Build the winner (its parameter count) and, for a final run, train it from scratch and test it once."""
    torch.manual_seed(request.seed)
    model = cell_network(best, splits.task.num_outputs, splits.spec.channels)
    record.params = count_parameters(model)
    if not request.final_training:
        return
    try:
        result = train_model(model, splits, get_preset(request.preset), request.budget.final_epochs, request.seed,
                             context.device, context)
    except Cancelled:
        record.status, record.ended = "stopped", "cancelled"
        return
    ref = context.workspace.write_tensors("searches", record.run_id, result.model.state_dict(),
                                          dict(genotype=best.to_json()))
    record.val_accuracy, record.test_accuracy = result.val_accuracy, result.test_accuracy
    record.train_seconds, record.checkpoint, record.checkpoint_sha256 = result.seconds, ref.path, ref.sha256


def _finish(workspace: Workspace, context: RunContext, record: SearchRecord, outcome: SearchOutcome) -> SearchRecord:
    record.finished_at = time.time()
    # the winner's weights as the row's artifact: verified, exported and imported with their sha256 like a Fisher
    winner = ArtifactRef(record.checkpoint, record.checkpoint_sha256) if record.checkpoint else None
    workspace.put_result("search", record.run_id, record.to_payload(), winner)
    context.emit(dict(method=record.method, type="finished", status=record.status, genotype=record.genotype,
                      test_accuracy=record.test_accuracy, elapsed=outcome.seconds))
    if record.status == "stopped":
        raise Cancelled(f"search {record.run_id} was cancelled; its partial history is kept in the workspace")
    return record


def search_events(workspace: Workspace, run_id: str, after: int = -1) -> list[dict]:
    """The stored events of search ``run_id`` after sequence number ``after`` (for live charts)."""
    return workspace.read_events(f"search:{run_id}", after)


def zoo_search(request: ZooSearchRequest, context: RunContext) -> list[SearchRecord]:
    """Store a best genotype (FUSE, standard space) for each task of ``request.suite`` (or ``request.tasks``);
    tasks already searched with this budget are read from the store."""
    request.validate(context.workspace)
    suite = resolve_suite(request.suite, context.workspace)
    names = list(request.tasks) or [t.name for t in suite.tasks]
    return [run_search(request.genotype_search(name), step)
            for name, step in zip(names, context.step_phases([f"searching {name}" for name in names]))]
