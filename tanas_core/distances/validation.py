"""Does a task distance beat its own noise? The report that can say "no".

For each metric it computes the suite's matrices with replicates (``DistanceRequest.replicates``; in the TA-NAS view
same-initialisation networks, in the probe view other draws of a task's data under the same probe network:
the view's ``reference``) and answers, from the networks alone:

* ``identity_top1``: a replicate of ``t`` (its "twin") placed among the baselines of column ``t``: the fraction of
  (target, architecture, seed, replicate) cases in which it ranks closest. A metric that cannot find a task's own
  twin cannot rank related tasks.
* ``signal_to_noise``: median over columns of (median ``d[b, t]`` over the other baselines from the target's own
  dataset) / ``r[t]``: the task signal. ``signal_to_noise_across`` (suites of several datasets) takes the baselines
  from the other datasets instead: reported apart, since in the probe view their Fishers are taken on other images
  and the ratio is large by construction.
* ``same_dataset_auc``: mean over columns of the AUC of "the baseline comes from the target's dataset" scored by
  closeness (``None`` for single-dataset suites).
* ``closest_stability``: the fraction of (architecture, seed) matrices whose closest baseline of a column equals the
  closest of the mean of the other matrices (leave one out), over all columns; ``None`` with one matrix.
* ``logdet_lift``: min over targets of ``mean log(diag F[t, t] + sigma^2) - log sigma^2`` (log-det metrics only).
* ``seconds``: what the metric took (Fisher matrices are shared between the diagonal metrics, so the first pays).
* ``rank_agreement`` (probe-view rows): mean over columns of the Spearman correlation between the probe view's and
  the TA-NAS view's ordering of the baselines (same metric).
* ``identity_top1_unrefined`` (a diagnostic, not a goal): the identity test without the baselines whose labels
  refine the target's (``tasks.refines``: MNIST 10-class for "digit 0"). A network trained on a finer labelling of
  the same dataset can be as close as the twin for a reason (the source finds 10-class tasks close to others); the
  verdict still uses ``identity_top1``.

Per row, ``columns`` holds the identity test of each target column with its interval and the baselines that beat
the twin, so a reader sees which columns are trustworthy and what a failing one loses to.

Every metric is reported in both views: ``NAME`` for the source's TA-NAS matrices, ``probe:NAME`` for the common
probe network (``probe_network``). The default metric is the one whose report is best (``identity_top1``, then
``signal_to_noise``).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from tanas_core.data.probe_images import fewer_than_asked
from tanas_core.data.suites import resolve_suite
from tanas_core.data.tasks import refines
from tanas_core.distances.matrices import across_architectures, distance_matrices
from tanas_core.distances.metrics import get_metric
from tanas_core.distances.transfer import report_transfer_gains, transfer_figures, transfer_split_half
from tanas_core.intervals import proportion_interval, resampling_range, spearman
from tanas_core.registry import VIEWS
from tanas_core.requests import FisherConfig, ValidateRequest
from tanas_core.training.zoo import epsilon_summary
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import DistanceResult, NetworkRecord
from tanas_core.workspace.store import Workspace, config_key

# The figures a verdict (and the choice of the default metric) rests on, in that order; they get intervals.
VERDICT_FIGURES = ("identity_top1", "signal_to_noise")


def row_name(view: str, metric: str, reference: str = "view") -> str:
    """The report's name of a (view, metric, reference) row: ``metric``, or ``probe:metric`` for the common-probe
    view, with ``@reference`` when the twins are not the view's own (``frechet@redraw``,
    ``probe:frechet@retrained``)."""
    name = metric if view == "tanas" else f"{view}:{metric}"
    return name if reference in ("view", VIEWS[view].own_reference) else f"{name}@{reference}"


def row_view(row: str) -> str:
    """The view of a report row named by ``row_name``."""
    return row.split(":")[0] if ":" in row else "tanas"


def row_reference(row: str) -> str:
    """The twins (``"redraw"`` or ``"retrained"``) of a report row named by ``row_name``."""
    return row.split("@")[1] if "@" in row else VIEWS[row_view(row)].own_reference


def _identity_cases(results: list[DistanceResult], leave_out: Callable[[str, str], bool] | None = None):
    """Yield ``(target, beaten_by)`` per (architecture, seed, target, replicate) case: the baselines of the column
    (those ``leave_out(baseline, target)`` drops excluded) at least as close as the replicate; empty: it ranks first."""
    for result in results:
        tasks = result.tasks
        for k in range(len(result.seeds)):
            for t, target in enumerate(tasks):
                rivals = [(tasks[b], result.matrices[k, b, t]) for b in range(len(tasks))
                          if b != t and not (leave_out and leave_out(tasks[b], target))]
                for value in result.replicates[k, t]:
                    yield target, [name for name, distance in rivals if distance <= value]


def identity_top1(results: list[DistanceResult], leave_out: Callable[[str, str], bool] | None = None) -> float:
    """Fraction of (target, architecture, seed, replicate) cases where the replicate beats every other baseline
    (every one but those ``leave_out(baseline, target)`` drops)."""
    hits = [not beaten for _, beaten in _identity_cases(results, leave_out)]
    return float(np.mean(hits)) if hits else float("nan")


def identity_columns(results: list[DistanceResult], refining: Callable[[str, str], bool]) -> dict[str, dict]:
    """The identity test column by column: ``{target: {hits, cases, share, low, high, beaten_by: {baseline: cases},
    refined_by: [baselines]}}``, ``low``/``high`` Wilson's 95 % interval of ``share`` (the two replicates of one
    network are not independent cases, so it is too narrow), ``beaten_by`` how often each baseline was at least as
    close as the replicate, ``refined_by`` the baselines whose labels refine the target's (``refining(b, t)``)."""
    columns: dict[str, dict] = {}
    for target, beaten in _identity_cases(results):
        column = columns.setdefault(target, dict(hits=0, cases=0, beaten_by={}))
        column["cases"] += 1
        column["hits"] += not beaten
        for name in beaten:
            column["beaten_by"][name] = column["beaten_by"].get(name, 0) + 1
    for target, column in columns.items():
        column["share"], column["low"], column["high"] = proportion_interval(column["hits"], column["cases"])
        column["beaten_by"] = dict(sorted(column["beaten_by"].items(), key=lambda item: -item[1]))
        column["refined_by"] = [b for b in results[0].tasks if b != target and refining(b, target)]
    return columns


def signal_to_noise(results: list[DistanceResult], datasets: dict[str, str] | None = None,
                    same: bool = True) -> float:
    """Median over (architecture, target) columns of median_b mean_seeds d[b, t] / r[t], ``b`` over the baselines
    from the target's own dataset (``same``: the verdict's figure, the task signal) or from the other datasets
    (``same=False``: in the probe view their Fishers are taken on other images, so that ratio is large by
    construction). ``datasets`` (task -> dataset) ``None``: every baseline. Columns without such a baseline are
    skipped; ``nan`` when none is left."""
    ratios = []
    for result in results:
        reference, mean, tasks = result.reference, result.mean, result.tasks
        for t in range(len(tasks)):
            others = [mean[b, t] for b in range(len(tasks)) if b != t and
                      (datasets is None or (datasets[tasks[b]] == datasets[tasks[t]]) == same)]
            if others and reference[t] > 0:
                ratios.append(float(np.median(others)) / float(reference[t]))
    return float(np.median(ratios)) if ratios else float("nan")


def figure_intervals(results: list[DistanceResult], resamples: int = 400, level: float = 0.95,
                     seed: int = 0, datasets: dict[str, str] | None = None) -> dict[str, list[float] | None]:
    """``{identity_top1: [low, high], signal_to_noise: [low, high]}``: the seed-resampling range, the central
    ``level`` percentiles of the verdict's two figures over ``resamples`` draws of each architecture's seeds with
    replacement (a seed's matrices and replicates move together): how far another zoo of as many seeds could move
    each figure. Not a confidence interval: with K seeds there are only C(2K-1, K) distinct draws, and with 3 seeds
    the range holds the figure less often than ``level`` says (``bench coverage``). ``None`` with one seed per
    architecture (nothing to resample). ``datasets``: as ``signal_to_noise`` takes it."""
    figure = dict(identity_top1=identity_top1, signal_to_noise=lambda sample: signal_to_noise(sample, datasets))

    def figures(positions: list[np.ndarray]) -> dict[str, float]:
        sample = [result.select_seeds(chosen) for result, chosen in zip(results, positions)]
        return {name: figure[name](sample) for name in VERDICT_FIGURES}

    return resampling_range([len(result.seeds) for result in results], figures, resamples, level, seed)


def _auc(same: list[float], other: list[float]) -> float:
    """P(a same-dataset baseline is closer than another one), ties counted half (distances: smaller is closer)."""
    wins = sum((s < o) + 0.5 * (s == o) for s in same for o in other)
    return wins / (len(same) * len(other))


def same_dataset_auc(results: list[DistanceResult], datasets: dict[str, str]) -> float | None:
    """Mean over columns with both kinds of baseline of the same-dataset AUC; ``None`` for one-dataset suites."""
    if len(set(datasets.values())) < 2:
        return None
    aucs = []
    for result in results:
        for t, target in enumerate(result.tasks):
            rows = [(b, name) for b, name in enumerate(result.tasks) if b != t]
            same = [result.mean[b, t] for b, name in rows if datasets[name] == datasets[target]]
            other = [result.mean[b, t] for b, name in rows if datasets[name] != datasets[target]]
            if same and other:
                aucs.append(_auc(same, other))
    return float(np.mean(aucs)) if aucs else None


def closest_stability(results: list[DistanceResult]) -> float | None:
    """Fraction of (architecture, seed, target) whose closest baseline equals the closest of the mean of the *other*
    matrices (leave one out: a matrix is never compared with an average that includes it); ``None`` with a single
    matrix, which has nothing to agree with."""
    combined = across_architectures(results)
    matrices = np.asarray(combined.matrices, dtype=float)  # [K, T, T], zero diagonal
    count = len(matrices)
    if count < 2:
        return None
    diagonal = np.eye(matrices.shape[-1], dtype=bool)
    others = (matrices.sum(axis=0)[None] - matrices) / (count - 1)
    own_closest = np.where(diagonal, np.inf, matrices).argmin(axis=1)
    others_closest = np.where(diagonal, np.inf, others).argmin(axis=1)
    return float((own_closest == others_closest).mean())


def smallest_lift(results: list[DistanceResult]) -> float | None:
    """Min over targets of the lift of ``F[t, t]`` above ``sigma^2`` (mean over architectures and seeds); ``None``
    for a metric without a lift."""
    if get_metric(results[0].metric).lift is None:
        return None
    return float(np.concatenate([r.lift for r in results]).mean(axis=0).min())


def rank_agreement(first: list[DistanceResult], second: list[DistanceResult]) -> float:
    """Mean over (architecture, target) columns of the Spearman correlation between two views' mean distances of
    the other baselines (1: the same order, 0: unrelated, -1: reversed); ``nan`` with fewer than 3 baselines."""
    correlations = []
    for a, b in zip(first, second):
        for t in range(len(a.tasks)):
            rows = [r for r in range(len(a.tasks)) if r != t]
            if len(rows) >= 3:
                correlations.append(spearman(a.mean[rows, t], b.mean[rows, t]))
    return float(np.mean(correlations)) if correlations else float("nan")


def metric_report(results: list[DistanceResult], datasets: dict[str, str], seconds: float,
                  compared_with: list[DistanceResult] | None = None,
                  refining: Callable[[str, str], bool] | None = None) -> dict:
    """Every figure of one metric's results (one ``DistanceResult`` per architecture); ``rank_agreement`` with
    ``compared_with`` (the TA-NAS view of the same metric) for probe-view rows, else ``None``;
    ``identity_top1_unrefined``: the identity test without the baselines ``refining(b, t)`` names (``None`` when not
    given); ``intervals``: the verdict's figures over resampled seeds (``figure_intervals``)."""
    several = len(set(datasets.values())) > 1
    figures = dict(identity_top1=identity_top1(results), signal_to_noise=signal_to_noise(results, datasets),
                   signal_to_noise_across=signal_to_noise(results, datasets, same=False) if several else None,
                   same_dataset_auc=same_dataset_auc(results, datasets), closest_stability=closest_stability(results),
                   logdet_lift=smallest_lift(results), seconds=seconds,
                   rank_agreement=None if compared_with is None else rank_agreement(results, compared_with),
                   identity_top1_unrefined=None if refining is None else identity_top1(results, refining))
    # JSON has no NaN: a figure that cannot be measured (no replicates, < 3 baselines) is null
    figures = {name: None if value is not None and np.isnan(value) else value for name, value in figures.items()}
    return dict(figures, intervals=figure_intervals(results, datasets=datasets))


def default_metric(metrics: dict[str, dict]) -> str:
    """The metric this report supports best: highest ``identity_top1``, then highest ``signal_to_noise``."""
    def score(item):
        return tuple(-1.0 if item[1][name] is None else item[1][name] for name in VERDICT_FIGURES)

    return max(metrics.items(), key=score)[0]


def validate_distances(request: ValidateRequest, context: RunContext) -> dict:
    """The report: ``{suite, archs, seeds, preset, replicates, fisher, fisher_images: {task: images} (the tasks
    holding fewer than M), views, default_metric, metrics: {NAME:
    {identity_top1, signal_to_noise, same_dataset_auc, closest_stability, logdet_lift, seconds, rank_agreement,
    identity_top1_unrefined[, transfer_rank_correlation, closest_is_best_source (and ``*_within`` for a suite of
    several datasets: ``transfer_figures``)]}}, columns: {NAME:
    identity_columns(...)}, epsilon: epsilon_summary(...), transfer: {kind, epochs, tasks, gains: {arch: [T, T]},
    split_half: transfer_split_half(...)}
    | None}``
    (JSON-ready; ``NAME``: ``row_name(view, metric)``)."""
    request.validate(context.workspace)
    suite = resolve_suite(request.suite, context.workspace)
    datasets = {task.name: task.dataset for task in suite.tasks}
    split = 1.0 if request.transfer == "none" else 0.8  # the share of the progress scale the rows take
    metrics, columns, by_row = _rows(request, suite, datasets, context.phase("rows", 0.0, split))
    gains = report_transfer_gains(request, suite, context.phase("transfer", split, 1.0))
    for name, results in by_row.items():
        if gains is not None:
            figures = transfer_figures(results, gains, datasets)
            metrics[name]["intervals"].update(figures.pop("intervals"))
            metrics[name].update(figures)
    report = dict(suite=suite.name, archs=list(request.archs), seeds=request.seeds, preset=request.preset,
                  replicates=request.replicates, fisher=request.fisher.to_dict(),
                  fisher_images=fewer_than_asked(suite.tasks, request.fisher.samples),
                  default_metric=default_metric(metrics), metrics=metrics, columns=columns,
                  views=list(request.views),
                  epsilon=epsilon_summary(_zoo_networks(request, context.workspace), datasets),
                  transfer=None if gains is None else dict(
                      kind=request.transfer, epochs=request.transfer_epochs, images=request.transfer_images,
                      tasks=list(datasets), gains={arch: gain.mean(axis=0).tolist() for arch, gain in gains.items()},
                      split_half=transfer_split_half(gains, list(datasets), datasets)),
                  created_at=time.time())
    context.workspace.put_result("validation", config_key(request.to_dict()), report)
    return report


def _rows(request: ValidateRequest, suite, datasets: dict[str, str], context: RunContext) -> tuple[dict, dict, dict]:
    """``(figures, identity columns, distance results)`` of every report row, keyed by its name (``datasets``: task
    name -> dataset)."""
    by_name = {task.name: task for task in suite.tasks}

    def refining(baseline: str, target: str) -> bool:
        return refines(by_name[baseline], by_name[target])

    metrics, columns, tanas, by_row = {}, {}, {}, {}
    rows = request.rows()
    phases = context.step_phases([row_name(*row) for row in rows], request.row_costs(len(suite.tasks)))
    for (view, metric, reference), phase in zip(rows, phases):
        started = time.perf_counter()
        results = distance_matrices(request.distance_request(metric, view, reference), phase)
        if view == "tanas":
            tanas.setdefault(metric, results)  # the matrices are the same under either reference
        name = row_name(view, metric, reference)
        by_row[name] = results
        metrics[name] = dict(metric_report(results, datasets, time.perf_counter() - started,
                                           tanas.get(metric) if view != "tanas" else None, refining),
                             reference=reference)
        columns[name] = identity_columns(results, refining)
    return metrics, columns, by_row


def _zoo_networks(request: ValidateRequest, workspace: Workspace) -> list[NetworkRecord]:
    """The zoo networks and replicates the report's TA-NAS rows used (its architectures, seeds and replicates)."""
    return [record for record in workspace.list_networks(request.suite, request.preset)
            if record.arch in request.archs and record.seed < request.seeds and record.replicate <= request.replicates]


GOALS = dict(identity_top1=0.95, signal_to_noise=3.0, same_dataset_auc=0.9, closest_stability=0.8, logdet_lift=2.0)


# The Fisher defaults while reports did not record their settings (M, the head's images and penalty changed after).
_BEFORE_RECORDED = FisherConfig(samples=512, head_samples=512, head_weight_decay=1e-4)


def latest_validation(workspace: Workspace, suite: str, preset: str,
                      fisher: FisherConfig | None = None, row: str | None = None) -> dict | None:
    """The newest stored ``validate_distances`` report of ``suite`` on ``preset``'s zoo (with ``fisher``: computed
    with those Fisher settings; a report stored before it recorded them ran at the defaults of its time,
    ``_BEFORE_RECORDED``; with ``row``: one that reports that row, so a newer report of one view does not hide the
    other view's verdict), or ``None``."""
    for report in workspace.list_results("validation"):
        if report.get("suite") != suite or report.get("preset") != preset:
            continue
        if row is not None and row not in report.get("metrics", {}):
            continue
        if fisher is None or (FisherConfig.from_stored(report["fisher"]) if "fisher" in report
                              else _BEFORE_RECORDED) == fisher:
            return report
    return None


def unsettled(figures: dict) -> list[str]:
    """The verdict's figures of one report row whose seed-resampling range (2.5-97.5 percentiles; with 3 seeds it holds
    the figure less often than 95 %: ``bench coverage``) reaches across their goal
    (another zoo could turn the answer), as ``"name low-high"``."""
    intervals = figures.get("intervals") or {}
    return [f"{name} {low:.2f}-{high:.2f}" for name in VERDICT_FIGURES
            for low, high in [intervals.get(name) or (GOALS[name], GOALS[name])] if low < GOALS[name] <= high]


def verdict(report: dict | None, metric: str) -> tuple[str, str]:
    """``("yes" | "no" | "not measured", why)``: does ``metric`` separate the suite's tasks from their noise, by the
    report (identity test and signal-to-noise must both meet their goals)? ``why`` ends with "not settled" when a
    figure's seed-resampling range reaches across its goal (``unsettled``)."""
    if report is None or metric not in report["metrics"]:
        return "not measured", "no validation report for this suite, preset, metric and these Fisher settings yet"
    figures = report["metrics"][metric]
    checks = [(name, figures[name], GOALS[name]) for name in VERDICT_FIGURES]
    # three decimals: 0.946 against a goal of 0.95 must not read "0.95 < 0.95"
    missed = [f"{name} not measured" if value is None else f"{name} {value:.3f} < {goal:g}"
              for name, value, goal in checks if value is None or not value >= goal]
    scope = (f"{', '.join(report['archs'])}, {report['seeds']} seed(s), {report['replicates']} "
             f"{row_reference(metric)} twin(s)")
    open_figures = ", ".join(unsettled(figures))
    narrowly = (f"; not settled: the seed-resampling range of {open_figures} reaches across its goal"
                if open_figures else "")
    if missed:
        return "no", f"{'; '.join(missed)} ({scope}){narrowly}"
    return "yes", (f"identity {figures['identity_top1']:.3f}, signal/noise {figures['signal_to_noise']:.2f} "
                   f"({scope}){narrowly}")
