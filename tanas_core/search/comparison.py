"""The source document's comparison table for a target: the hand-designed networks against random search and FUSE
on the standard and the related space, each winner trained from scratch and tested once; stored, exported as CSV."""
from __future__ import annotations

import csv
import time
from pathlib import Path

from tanas_core.data.suites import Suite, resolve_target
from tanas_core.data.tasks import Task
from tanas_core.networks import ARCHITECTURES
from tanas_core.requests import CompareRequest
from tanas_core.search.nas import closest_tasks, run_search
from tanas_core.search.space import Genotype
from tanas_core.training.trainer import get_preset
from tanas_core.training.zoo import ensure_network
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import COMPARISON_COLUMNS, Comparison, ComparisonRow
from tanas_core.workspace.store import Workspace, config_key

__all__ = ["COMPARISON_COLUMNS", "Comparison", "compare", "latest_comparison", "write_csv"]

COMPARED = (("random", "standard", "random search"), ("fuse", "standard", "FUSE, standard space"),
            ("fuse", "related", "FUSE, related space"))


def _hand_designed(request: CompareRequest, context: RunContext, suite: Suite, target: Task,
                   repeat: int) -> list[ComparisonRow]:
    preset, rows = get_preset(request.preset), []
    for arch, step in zip(ARCHITECTURES, context.step_phases([f"{a} on {target.name}" for a in ARCHITECTURES])):
        record, _ = ensure_network(step, suite, target, arch, preset, request.seed + repeat)
        rows.append(ComparisonRow("hand-designed", arch, record.test_accuracy, record.val_accuracy,
                                  record.params / 1e6, None, record.seconds, preset.epochs_for(arch), record.device,
                                  repeat=repeat))
    return rows


def _searched(request: CompareRequest, context: RunContext, repeat: int) -> list[ComparisonRow]:
    rows = []
    for (method, space, label), step in zip(COMPARED, context.step_phases([label for _, _, label in COMPARED])):
        record = run_search(request.search(space, method, repeat), step)
        rows.append(ComparisonRow(label, f"cell {Genotype.from_json(record.genotype).id}", record.test_accuracy,
                                  record.val_accuracy, record.params / 1e6, record.search_seconds,
                                  record.train_seconds, request.budget.final_epochs, record.device, space,
                                  int(record.space["size"]), ", ".join(record.sources) or None, record.run_id,
                                  repeat))
    return rows


def compare(request: CompareRequest, context: RunContext) -> Comparison:
    """The source document's comparison table for ``request.target``, ``request.repeats`` times: VGG-16, ResNet-18,
    DenseNet-121 trained on it (the zoo networks of seeds ``seed``, ``seed + 1``, ...), random search and FUSE on the
    standard space, FUSE on the related space (search seeds likewise), each winner trained once and tested. Stored
    (kind ``comparison``) and exported to ``<workspace>/exports/``; stored parts are reused. ``Comparison.summary``
    gives means with intervals, ``Comparison.paired`` FUSE-related against every other method."""
    workspace = context.workspace
    request.validate(workspace)
    suite, target = resolve_target(request.target, workspace)
    started, rows = time.perf_counter(), []
    nearest = closest_tasks(request.search("related", "fuse"), context.phase("closest tasks", 0.0, 0.05))
    repeats = context.phase("repeats", 0.05, 1.0).step_phases([f"repeat {r + 1}/{request.repeats}"
                                                               for r in range(request.repeats)])
    for repeat, phase in enumerate(repeats):
        rows += _hand_designed(request, phase.phase("hand-designed networks", 0.0, 0.25), suite, target, repeat)
        rows += _searched(request, phase.phase("searches", 0.25, 1.0), repeat)
    export = workspace.root / "exports" / f"comparison-{suite.name}-{target.name}.csv"
    export.parent.mkdir(exist_ok=True)
    result = Comparison(suite.name, target.name, rows, str(export), nearest, time.perf_counter() - started,
                        request.preset, request.budget.to_dict(), time.time(), request.to_dict())
    write_csv(result.table_rows(), export, COMPARISON_COLUMNS)
    workspace.put_result("comparison", config_key(dict(kind="comparison", target=target.fingerprint(),
                                                       request=request.to_dict())), result.to_payload())
    context.progress("done", 1.0)
    return result


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
