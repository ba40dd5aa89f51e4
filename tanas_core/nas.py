"""Task-aware NAS end to end: closest tasks -> related space -> FUSE / random search -> the comparison table.

Everything here reads and writes the workspace store: each learned task's best genotype (``task_genotype``, the
``zoo search`` step), each search run (``run_search``: its live event stream ``search:<run id>`` and its result), and
each comparison table (``compare``, also exported as CSV). A repeated request with the same configuration is read
from the store. The target's test split is read once, after the search, to evaluate the winner trained from scratch.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .backends import Backend
from .fuse import SearchBudget, SearchOutcome, fuse, random_search
from .networks import ARCHITECTURES, count_parameters
from .networks.cells import cell_network
from .search_space import Genotype, SearchSpace, related_space, standard_space
from .store import Workspace, config_key
from .task_distances import FisherConfig, across_architectures, distance_matrices
from .tasks import Suite, Task, make_splits
from .training import Preset, get_preset, resolve_device, train_model
from .zoo import ensure_network, parse_archs

METHODS = ("fuse", "random")
SPACES = ("related", "standard")


@dataclass(frozen=True)
class ClosestSettings:
    """How the closest baselines of a target are found: the distance ``metric``, the architectures whose matrices
    are averaged, ``seeds`` zoo seeds, ``sigma`` (log-det), the Fisher settings and ``top`` (k closest tasks)."""

    metric: str = "logdet"
    archs: tuple = ("vgg16", "resnet18", "densenet121")
    seeds: int = 1
    sigma: float = 1e-3
    fisher: FisherConfig = field(default_factory=FisherConfig)
    top: int = 1
    baselines: tuple = ()  # the learned tasks to choose from (empty: every other task of the suite)

    def to_dict(self) -> dict:
        return dict(metric=self.metric, archs=list(self.archs), seeds=self.seeds, sigma=self.sigma,
                    fisher=vars(self.fisher), top=self.top, baselines=list(self.baselines))

    @classmethod
    def from_dict(cls, params: dict | None) -> ClosestSettings:
        """From a JSON object ``{metric, archs, seeds, sigma, samples, head_samples, top, baselines}`` (``archs``
        as a list or a comma-separated string); missing fields keep their defaults."""
        params = dict(params or {})
        fisher = FisherConfig(samples=int(params.pop("samples", 256)),
                              head_samples=int(params.pop("head_samples", 512)))
        if "archs" in params:
            params["archs"] = tuple(parse_archs(params["archs"]))
        if "baselines" in params:
            params["baselines"] = tuple(params["baselines"])
        return cls(fisher=fisher, **params)


def parse_target(text: str, resolve: Callable[[str], Suite]) -> tuple[Suite, Task]:
    """``"SUITE:TASK"`` -> (suite, task); ``ValueError`` naming the suite's tasks when the task is unknown."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise ValueError(f"target must look like SUITE:TASK (e.g. ld8:mnist-10class), got {text!r}")
    suite_name, task_name = (part.strip() for part in text.split(":"))
    suite = resolve(suite_name)
    return suite, suite.task(task_name)


def closest_tasks(workspace: Workspace, suite: Suite, target: Task, preset: Preset,
                  settings: ClosestSettings = ClosestSettings(), device: str = "auto",
                  on_progress: Callable[[str, float], None] | None = None,
                  backend: Backend | None = None) -> list[dict]:
    """The ``settings.top`` baselines of ``suite`` closest to ``target`` (distance averaged over the architectures
    and seeds), among ``settings.baselines`` when given: ``[{baseline, distance, std, per_seed}]``, nearest first.
    Distances come from the store when cached; missing ones are computed where ``backend`` runs work."""
    names = [t.name for t in suite.tasks]
    unknown = [b for b in settings.baselines if b not in names]
    if unknown:
        raise ValueError(f"baseline(s) {unknown} are not tasks of suite {suite.name!r}: {', '.join(names)}")
    allowed = [b for b in (settings.baselines or names) if b != target.name]
    if not allowed:
        raise ValueError(f"choose at least one baseline other than the target {target.name!r}")
    if not 1 <= settings.top <= len(allowed):
        raise ValueError(f"top must be in 1..{len(allowed)} for {len(allowed)} baseline(s), got {settings.top}")
    results = [distance_matrices(workspace, suite, arch, settings.metric, list(range(settings.seeds)), preset,
                                 sigma=settings.sigma, config=settings.fisher, device=device, on_progress=on_progress,
                                 backend=backend)
               for arch in settings.archs]
    combined = results[0] if len(results) == 1 else across_architectures(results)
    ranking = combined.closest(target.name, len(names) - 1)
    return [row for row in ranking if row["baseline"] in allowed][:settings.top]


def task_genotype(workspace: Workspace, suite: Suite, task: Task, preset: Preset,
                  budget: SearchBudget = SearchBudget(), seed: int = 0, device: str = "auto",
                  on_event: Callable[[dict], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Genotype:
    """The best genotype of a learned task: FUSE on the standard space over its training / validation splits, stored
    so the dictionary of learned tasks holds its architecture (the ``zoo search`` step). Cached."""
    record = run_search(workspace, suite, task, space="standard", method="fuse", preset=preset, budget=budget,
                        seed=seed, device=device, on_event=on_event, should_stop=should_stop, final_training=False)
    if record["status"] != "done":
        raise InterruptedError(f"the search for {task.name}'s genotype was stopped")
    return Genotype.from_json(record["genotype"])


def stored_genotype(workspace: Workspace, suite: Suite, task: Task, preset: Preset | str = "demo",
                    budget: SearchBudget = SearchBudget(), seed: int = 0) -> Genotype | None:
    """The genotype ``task_genotype`` stored for ``task``, or ``None`` (never searches)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    key = search_key(suite, task, standard_space(), "fuse", preset, budget, seed, False)
    stored = workspace.get_result("search", key)
    if stored is None or stored[0]["status"] != "done":
        return None
    return Genotype.from_json(stored[0]["genotype"])


def latest_comparison(workspace: Workspace, suite: str, target: str) -> dict | None:
    """The newest stored comparison table for ``suite:target``, or ``None``."""
    for payload in workspace.list_results("comparison"):
        if payload["suite"] == suite and payload["target"] == target:
            return payload
    return None


def build_space(workspace: Workspace, suite: Suite, target: Task, space: str | SearchSpace, preset: Preset,
                budget: SearchBudget, closest: ClosestSettings, seed: int = 0, device: str = "auto",
                on_progress: Callable[[str, float], None] | None = None,
                backend: Backend | None = None) -> SearchSpace:
    """``"standard"``, ``"related"`` (from the closest baselines' genotypes, searched first when missing) or a
    ready ``SearchSpace``."""
    if isinstance(space, SearchSpace):
        return space
    if space == "standard":
        return standard_space()
    if space != "related":
        raise ValueError(f"unknown space {space!r}: choose one of {', '.join(SPACES)}")
    nearest = closest_tasks(workspace, suite, target, preset, closest, device, on_progress, backend)
    chosen = []
    for row in nearest:
        if on_progress:
            on_progress(f"best genotype of {row['baseline']}", 0.0)
        chosen.append((row["baseline"], task_genotype(workspace, suite, suite.task(row["baseline"]), preset, budget,
                                                      seed, device)))
    return related_space(chosen)


def search_key(suite: Suite, target: Task, space: SearchSpace, method: str, preset: Preset, budget: SearchBudget,
               seed: int, final_training: bool) -> str:
    """Configuration hash of a search run (its id)."""
    return config_key(dict(kind="search", suite=suite.name, target=target.fingerprint(), spec=vars(suite.spec),
                           space=space.describe(), method=method, preset=preset.to_dict(), budget=budget.to_dict(),
                           seed=seed, final=final_training))


def run_search(workspace: Workspace, suite: Suite, target: Task, *, space: str | SearchSpace = "related",
               method: str = "fuse", preset: Preset | str = "demo", budget: SearchBudget = SearchBudget(),
               seed: int = 0, device: str = "auto", closest: ClosestSettings = ClosestSettings(),
               on_event: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
               on_progress: Callable[[str, float], None] | None = None, final_training: bool = True,
               run_id: str | None = None, backend: Backend | None = None) -> dict:
    """Search ``space`` for ``target`` with ``method`` and (``final_training``) train the winner from scratch.

    Returns the stored record: ``{run_id, suite, target, method, space: {...}, status, genotype, genotype_text,
    params, val_accuracy, test_accuracy, search_seconds, train_seconds, device, budget, rounds | evaluated}``.
    Events go to ``on_event`` and to the store stream ``search:<run_id>``; a stopped search keeps its partial history
    (status ``"stopped"``). A finished run with the same configuration is returned from the store.
    ``backend`` decides where the closest-task distances and random-search candidates run (FUSE trains its
    candidates together, as one mixture, so it runs here).
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}: choose one of {', '.join(METHODS)}")
    budget.validate()
    resolve_device(device)
    space = build_space(workspace, suite, target, space, preset, budget, closest, seed, device, on_progress, backend)
    run_id = run_id or search_key(suite, target, space, method, preset, budget, seed, final_training)
    stored = workspace.get_result("search", run_id)
    if stored is not None and stored[0]["status"] == "done":
        return stored[0]

    stream = f"search:{run_id}"
    workspace.clear_events(stream)
    record = dict(run_id=run_id, suite=suite.name, target=target.name, method=method, space=space.describe(),
                  status="running", preset=preset.name, budget=budget.to_dict(), seed=seed, started_at=time.time())
    workspace.put_result("search", run_id, record)

    def emit(event: dict) -> None:
        workspace.append_event(stream, event)
        if on_event is not None:
            on_event(dict(event, run_id=run_id))

    # Only the training and validation splits reach the search: the test split is not even built until the end.
    splits = make_splits(target, preset.sizes, 0, suite.spec)
    train, val = splits.tensors("train"), splits.tensors("val")
    try:
        if method == "fuse":
            outcome: SearchOutcome = fuse(space, train, val, target.num_outputs, preset, budget, seed, device,
                                          on_event=emit, should_stop=should_stop)
        else:
            outcome = random_search(space, train, val, target.num_outputs, preset, budget, seed, device,
                                    on_event=emit, should_stop=should_stop, backend=backend)
    except Exception as error:
        workspace.put_result("search", run_id, dict(record, status="failed", error=str(error)))
        raise
    record.update(status=outcome.status, search_seconds=outcome.seconds, device=outcome.device,
                  genotype=outcome.best.to_json() if outcome.best else None,
                  genotype_text=str(outcome.best) if outcome.best else None)
    if outcome.rounds is not None:
        record["rounds"] = [dict(candidates=[g.to_json() for g in r.candidates], alpha=r.alpha, weights=r.weights,
                                 steps=r.steps, converged=r.converged, winner=r.winner) for r in outcome.rounds]
    if outcome.evaluated is not None:
        record["evaluated"] = outcome.evaluated
    if outcome.status == "done" and outcome.best is not None:
        if on_progress:
            on_progress("training the winner from scratch", 0.0)
        torch.manual_seed(seed)
        model = cell_network(outcome.best, target.num_outputs, suite.spec.channels)
        record["params"] = count_parameters(model)
        if final_training:
            try:
                result = train_model(model, splits, preset, budget.final_epochs, seed, device,
                                     should_stop=should_stop)
            except InterruptedError:
                record["status"] = "stopped"
            else:
                ref = workspace.write_tensors("searches", run_id, result.model.state_dict(),
                                              dict(genotype=outcome.best.to_json()))
                record.update(val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy,
                              train_seconds=result.seconds, checkpoint=ref.path, checkpoint_sha256=ref.sha256)
    record["finished_at"] = time.time()
    workspace.put_result("search", run_id, record)
    emit(dict(method=method, type="finished", status=record["status"], genotype=record.get("genotype"),
              test_accuracy=record.get("test_accuracy"), elapsed=outcome.seconds))
    return record


def search_events(workspace: Workspace, run_id: str, after: int = -1) -> list[dict]:
    """The stored events of search ``run_id`` after sequence number ``after`` (for live charts)."""
    return workspace.read_events(f"search:{run_id}", after)


COMPARISON_COLUMNS = ["method", "architecture", "test_accuracy", "val_accuracy", "params_m", "search_seconds",
                      "train_seconds", "train_epochs", "device", "space", "space_size", "closest_task"]


def compare(workspace: Workspace, suite: Suite, target: Task, preset: Preset | str = "demo",
            budget: SearchBudget = SearchBudget(), seed: int = 0, device: str = "auto",
            closest: ClosestSettings = ClosestSettings(), on_event: Callable[[dict], None] | None = None,
            on_progress: Callable[[str, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None, backend: Backend | None = None) -> dict:
    """The source document's comparison table for ``target``: VGG-16, ResNet-18, DenseNet-121 trained on it (the zoo
    networks, seed ``seed``), random search and FUSE on the standard space, FUSE on the related space.

    Returns ``{rows: [...COMPARISON_COLUMNS], csv: path, seconds, closest: [...]}``, stored (kind ``comparison``) and
    exported to ``<workspace>/exports/``. Searches and networks already in the store are reused.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    budget.validate()
    report = on_progress or (lambda message, fraction: None)
    started = time.perf_counter()
    rows = []
    for index, arch in enumerate(ARCHITECTURES):
        report(f"{arch} on {target.name}", index / 6)
        record, _ = ensure_network(workspace, suite, target, arch, preset, seed, device, should_stop=should_stop)
        rows.append(dict(method="hand-designed", architecture=arch, test_accuracy=record.test_accuracy,
                         val_accuracy=record.val_accuracy, params_m=record.params / 1e6, search_seconds=None,
                         train_seconds=record.seconds, train_epochs=preset.epochs_for(arch), device=record.device,
                         space=None, space_size=None, closest_task=None))
    nearest = closest_tasks(workspace, suite, target, preset, closest, device, on_progress, backend)
    runs = [("random", "standard", "random search"), ("fuse", "standard", "FUSE, standard space"),
            ("fuse", "related", "FUSE, related space")]
    for index, (method, space, label) in enumerate(runs):
        report(label, (3 + index) / 6)
        record = run_search(workspace, suite, target, space=space, method=method, preset=preset, budget=budget,
                            seed=seed, device=device, closest=closest, on_event=on_event, should_stop=should_stop,
                            on_progress=on_progress, backend=backend)
        if record["status"] != "done":
            raise InterruptedError(f"{label} was stopped; its partial history is in the store ({record['run_id']})")
        rows.append(dict(method=label, architecture=f"cell {Genotype.from_json(record['genotype']).id}",
                         test_accuracy=record["test_accuracy"], val_accuracy=record["val_accuracy"],
                         params_m=record["params"] / 1e6, search_seconds=record["search_seconds"],
                         train_seconds=record["train_seconds"], train_epochs=budget.final_epochs,
                         device=record["device"], space=space, space_size=record["space"]["size"],
                         closest_task=", ".join(record["space"]["sources"]) or None, run_id=record["run_id"]))
    key = config_key(dict(kind="comparison", suite=suite.name, target=target.fingerprint(), preset=preset.to_dict(),
                          budget=budget.to_dict(), seed=seed, closest=closest.to_dict()))
    export = workspace.root / "exports" / f"comparison-{suite.name}-{target.name}.csv"
    export.parent.mkdir(exist_ok=True)
    write_csv(rows, export, COMPARISON_COLUMNS)
    result = dict(suite=suite.name, target=target.name, rows=rows, csv=str(export), closest=nearest,
                  seconds=time.perf_counter() - started, preset=preset.name, budget=budget.to_dict())
    workspace.put_result("comparison", key, result)
    report("done", 1.0)
    return result


def zoo_search(workspace: Workspace, suite: Suite, preset: Preset | str = "demo",
               budget: SearchBudget = SearchBudget(), seed: int = 0, device: str = "auto",
               tasks: list[str] | None = None, on_progress: Callable[[str, float], None] | None = None) -> list[dict]:
    """Store a best genotype (FUSE, standard space) for each task of ``suite`` (or ``tasks``): ``[{task, genotype,
    search_seconds}]``. Tasks already searched are read from the store."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    chosen = [suite.task(name) for name in tasks] if tasks else list(suite.tasks)
    rows = []
    for index, task in enumerate(chosen):
        if on_progress:
            on_progress(f"searching {task.name}", index / len(chosen))
        record = run_search(workspace, suite, task, space="standard", method="fuse", preset=preset, budget=budget,
                            seed=seed, device=device, final_training=False)
        rows.append(dict(task=task.name, genotype=record["genotype_text"], params=record.get("params"),
                         search_seconds=record["search_seconds"], status=record["status"]))
    return rows


def write_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None) -> Path:
    """Write ``rows`` to ``path`` as CSV (columns: ``columns`` or the first row's keys)."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
