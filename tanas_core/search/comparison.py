"""The source document's comparison table for a target: the hand-designed networks against random search and FUSE
on the standard and the related space, each winner trained from scratch and tested once; stored, exported as CSV.

Two controls credit a result to relatedness or not: FUSE on the space of the *farthest* baseline and of a *random*
baseline (drawn, by the repeat's seed, from those outside the closest), built exactly as the related space is. If the
closest task's space wins only as often as theirs, the win is not the distance's. A baseline whose genotype is the
closest task's gives the related space itself, which ties by construction, so each control passes over such baselines
(the next farthest, the next drawn); where every baseline outside the closest is one, the control is flagged
(``control_warnings``)."""
from __future__ import annotations

import csv
import functools
import random
import time
from pathlib import Path
from typing import Callable

from tanas_core.data.suites import Suite, resolve_target
from tanas_core.data.tasks import Task
from tanas_core.networks import ARCHITECTURES
from tanas_core.requests import CompareRequest, SearchRequest
from tanas_core.search.nas import build_space, closest_tasks, get_search, run_search, task_genotype
from tanas_core.search.space import Genotype, related_space
from tanas_core.training.trainer import get_preset
from tanas_core.training.zoo import ensure_network
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import COMPARISON_COLUMNS, Comparison, ComparisonRow
from tanas_core.workspace.store import Workspace, config_key

__all__ = ["COMPARISON_COLUMNS", "Comparison", "compare", "control_warnings", "controls_on_the_related_space",
           "latest_comparison", "write_csv"]

RELATED = "FUSE, related space"
COMPARED = (("random", "standard", "random search"), ("fuse", "standard", "FUSE, standard space"),
            ("fuse", "related", RELATED))
# The controls: which baseline's space FUSE searches instead of the closest one's.
CONTROLS = (("farthest", "FUSE, farthest task's space"), ("random", "FUSE, a random task's space"))


def _hand_designed(request: CompareRequest, context: RunContext, suite: Suite, target: Task,
                   repeat: int) -> list[ComparisonRow]:
    preset, rows = get_preset(request.preset), []
    for arch, step in zip(ARCHITECTURES, context.step_phases([f"{a} on {target.name}" for a in ARCHITECTURES])):
        record, _ = ensure_network(step, suite, target, arch, preset, request.seed + repeat)
        rows.append(ComparisonRow(method="hand-designed", architecture=arch, test_accuracy=record.test_accuracy,
                                  val_accuracy=record.val_accuracy, params_m=record.params / 1e6,
                                  search_seconds=None, train_seconds=record.seconds,
                                  train_epochs=preset.epochs_for(arch), device=record.device, repeat=repeat))
    return rows


def control_tasks(ranking: list[dict], top: int, seed: int,
                  informative: Callable[[str], bool] = lambda baseline: True) -> dict[str, str]:
    """``{farthest: baseline, random: baseline}`` of a ranking of every allowed baseline (closest first), both from
    outside the ``top`` closest (the last one when none is): the farthest, and one drawn with ``seed``, each among
    the ``informative`` ones where any is (asked lazily, farthest first, then in the seed's order), else as if none
    were."""
    outside = [row["baseline"] for row in ranking[top:]] or [ranking[-1]["baseline"]]
    drawn = random.Random(seed).sample(outside, len(outside))
    farthest = next((name for name in reversed(outside) if informative(name)), outside[-1])
    return dict(farthest=farthest, random=next((name for name in drawn if informative(name)), drawn[0]))


def _not_the_related_space(request: CompareRequest, context: RunContext, repeat: int) -> Callable[[str], bool]:
    """Whether a baseline's space differs from repeat ``repeat``'s related space: two baselines with one stored
    genotype give one space, and a control searching the related space itself ties with it by construction. Each
    baseline asked gets its genotype (searched when none is stored, as the related space's are), once: both
    controls ask, and finding a stored genotype reads every stored search."""
    search = request.search("related", "fuse", repeat)
    related = _space_identity(build_space(search, context.phase("related space", 0.0, 0.5)).describe())

    @functools.cache
    def informative(baseline: str) -> bool:
        step = context.phase(f"genotype of {baseline}", 0.5, 1.0)
        return _space_identity(related_space([(baseline, task_genotype(search, step, baseline))]).describe()) != related

    return informative


def _searches(request: CompareRequest, controls: dict[str, str], repeat: int) -> list[tuple[str, SearchRequest]]:
    """``(label, search)`` of every searched row of one repeat: the source's three, then the two controls."""
    searches = [(label, request.search(space, method, repeat)) for method, space, label in COMPARED]
    for kind, label in CONTROLS:
        search = request.search("related", "fuse", repeat)
        searches.append((label, search.replace(closest=search.closest.replace(baselines=(controls[kind],), top=1))))
    return searches


def _searched(request: CompareRequest, context: RunContext, controls: dict[str, str],
              repeat: int) -> list[ComparisonRow]:
    rows, searches = [], _searches(request, controls, repeat)
    for (label, search), step in zip(searches, context.step_phases([label for label, _ in searches])):
        record = run_search(search, step)
        rows.append(ComparisonRow(
            method=label, architecture=f"cell {Genotype.from_json(record.genotype).id}",
            test_accuracy=record.test_accuracy, val_accuracy=record.val_accuracy, params_m=record.params / 1e6,
            search_seconds=record.search_seconds, train_seconds=record.train_seconds,
            train_epochs=request.budget.final_epochs, device=record.device, space=search.space,
            space_size=int(record.space["size"]), closest_task=", ".join(record.sources) or None,
            run_id=record.run_id, repeat=repeat))
    return rows


def compare(request: CompareRequest, context: RunContext) -> Comparison:
    """The source document's comparison table for ``request.target``, ``request.repeats`` times: VGG-16, ResNet-18,
    DenseNet-121 trained on it (the zoo networks of seeds ``seed``, ``seed + 1``, ...), random search and FUSE on the
    standard space, FUSE on the related space and, as controls, on the farthest and a random baseline's space whose
    space is not the related space itself where one is (search seeds likewise), each winner trained once and tested.
    Stored (kind ``comparison``) and exported to ``<workspace>/exports/``; stored parts are reused.
    ``Comparison.summary`` gives means with intervals, ``Comparison.paired`` FUSE-related against every other
    method."""
    workspace = context.workspace
    request.validate(workspace)
    suite, target = resolve_target(request.target, workspace)
    started, rows = time.perf_counter(), []
    ranking = closest_tasks(request.search("related", "fuse"), context.phase("closest tasks", 0.0, 0.05),
                            every=True)
    nearest = ranking[:request.closest.top]
    repeats = context.phase("repeats", 0.05, 1.0).step_phases([f"repeat {r + 1}/{request.repeats}"
                                                               for r in range(request.repeats)])
    for repeat, phase in enumerate(repeats):
        rows += _hand_designed(request, phase.phase("hand-designed networks", 0.0, 0.25), suite, target, repeat)
        controls = control_tasks(ranking, request.closest.top, request.seed + repeat,
                                 _not_the_related_space(request, phase.phase("controls", 0.25, 0.3), repeat))
        rows += _searched(request, phase.phase("searches", 0.3, 1.0), controls, repeat)
    export = workspace.root / "exports" / f"comparison-{suite.name}-{target.name}.csv"
    export.parent.mkdir(exist_ok=True)
    result = Comparison(suite=suite.name, target=target.name, rows=rows, csv=str(export), closest=nearest,
                        seconds=time.perf_counter() - started, preset=request.preset, budget=request.budget.to_dict(),
                        created_at=time.time(), request=request.to_dict())
    write_csv(result.table_rows(), export, COMPARISON_COLUMNS)
    workspace.put_result("comparison", config_key(dict(kind="comparison", target=target.fingerprint(),
                                                       request=request.to_dict())), result.to_payload())
    context.progress("done", 1.0)
    return result


def _space_identity(space: dict) -> str:
    """What makes two searched spaces one space (operations, skeleton, wirings, candidates), not whose they are."""
    return config_key({name: space.get(name) for name in ("operations", "skeleton", "nodes", "seeds")})


def controls_on_the_related_space(result: Comparison, workspace: Workspace) -> dict[str, tuple[int, int]]:
    """Per control (``CONTROLS`` label): ``(repeats whose searched space is the related space itself, repeats
    compared)``. Two baselines with the same stored genotype give the same space, and a control searching the
    related space ties with it by construction: it can credit nothing to relatedness. Repeats whose search records
    are gone are not compared."""
    def identity(row) -> str | None:
        record = get_search(workspace, row.run_id) if row.run_id else None
        return _space_identity(record.space) if record else None

    related = {row.repeat: identity(row) for row in result.rows if row.method == RELATED}
    out = {}
    for _, label in CONTROLS:
        pairs = [(identity(row), related.get(row.repeat)) for row in result.rows if row.method == label]
        pairs = [(control, own) for control, own in pairs if control is not None and own is not None]
        out[label] = (sum(control == own for control, own in pairs), len(pairs))
    return out


def control_warnings(result: Comparison, workspace: Workspace) -> list[str]:
    """One sentence per control that searched the related space itself in some repeat (none: every control is
    informative), for the CLI and the Search page."""
    return [f"{label}: the related space itself in {same} of {compared} repeat(s) (its baseline's stored genotype "
            "is the closest task's), so it ties there by construction and says nothing about relatedness"
            for label, (same, compared) in controls_on_the_related_space(result, workspace).items() if same]


def latest_comparison(workspace: Workspace, suite: str, target: str) -> Comparison | None:
    """The newest stored comparison table for ``suite:target``, or ``None``."""
    for payload in workspace.list_results("comparison"):
        if payload["suite"] == suite and payload["target"] == target and "preset" in payload:
            return Comparison.from_payload(payload)
    return None


def write_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None) -> Path:
    """Write ``rows`` to ``path`` as CSV (columns: ``columns`` or the first row's keys)."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
