"""``validate distances``: does each task-distance metric beat its own noise on a suite? (prints, writes JSON)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tanas_core.cli.common import (
    ProgressPrinter,
    distance_options,
    make_context,
    measurement_settings,
    preset_option,
    print_table,
    run_options,
    suite_option,
    workspace,
)
from tanas_core.distances.curve import budget_trend, head_settings, report_preset
from tanas_core.distances.report_table import VERDICT_HEADERS, answer, split_half_text, transfer_cell, with_range
from tanas_core.distances.validation import GOALS, VERDICT_FIGURES, row_reference, row_view, unsettled
from tanas_core.distances.views import REFERENCE_TEXT
from tanas_core.errors import TanasError
from tanas_core.registry import VIEWS
from tanas_core.requests import ValidateRequest


def register(commands) -> None:
    """Add the ``validate`` group to ``commands``."""
    group = commands.add_parser("validate", help="checks that results beat their noise").add_subparsers(
        dest="action", required=True)
    sub = group.add_parser("distances", help="per metric: identity test, signal/noise, dataset AUC, stability, lift")
    suite_option(sub)
    distance_options(sub, ValidateRequest, metric=False)
    preset_option(sub, ValidateRequest)
    run_options(sub)
    metrics = ",".join(ValidateRequest.default("metrics"))
    sub.add_argument("--metrics", default=None, help=f"comma-separated metrics to report (default: {metrics})")
    sub.add_argument("--views", default=None,
                     help=f"comma-separated views to report (default: {','.join(VIEWS)}; probe: the common probe "
                          "network, Task2Vec's design)")
    sub.add_argument("--references", default=None,
                     help=f"comma-separated twins each row is judged against (default: "
                          f"{','.join(ValidateRequest.default('references'))}: both, so the views are judged under "
                          "matched references; view: each view's own)")
    sub.add_argument("--transfer", default=None, choices=["none", "linear", "finetune"],
                     help="also measure how well each zoo network transfers to every other task, and how well each "
                          "row's distances predict it (linear: a head on frozen features; finetune: training with a "
                          "new head; default: none)")
    sub.add_argument("--transfer-epochs", type=float, default=None,
                     help=f"epochs of fine-tuning transfer, and of its from-scratch baseline (default: "
                          f"{ValidateRequest.default('transfer_epochs'):g})")
    sub.add_argument("--transfer-images", type=int, default=None,
                     help=f"training images of fine-tuning transfer (default: "
                          f"{ValidateRequest.default('transfer_images')})")
    sub.add_argument("--json", default=None, help="also write the report to this JSON file")
    sub.set_defaults(func=run_validate, request=validate_request)
    table = group.add_parser("table", help="a report's JSON (validate distances --json) as a Markdown table, for "
                                           "docs/results/")
    table.add_argument("reports", nargs="+", help="report JSON files")
    table.add_argument("--out", default=None, help="write the Markdown here instead of printing it")
    table.set_defaults(func=run_table)
    curve = group.add_parser("curve", help="reports of one suite across presets as one table: how far training "
                                           "budget, epsilon and averaging take each row, and each row's trend "
                                           "against the training budget (docs/results/)")
    curve.add_argument("reports", nargs="+", help="report JSON files, in the order of the table")
    curve.set_defaults(func=run_curve)


def report_markdown(report: dict, source: str = "") -> str:
    """A report as Markdown: one line naming its settings (and ``source``, the JSON it was read from), then one row
    per (view, metric): every figure, the verdict's two with their seed-resampling range, and the verdict."""
    fisher = report.get("fisher", {})
    transfer = report.get("transfer")
    extra = ("transfer_rank_correlation", "closest_is_best_source") if transfer else ()
    lines = [f"`{report['suite']}`: {', '.join(report['archs'])}, {report['seeds']} seed(s), {report['replicates']} "
             f"twin(s) per task and seed, preset `{report['preset']}`, M = {fisher.get('samples', 'n/a')}"
             + "".join(f" ({name}: {count})" for name, count in report.get("fisher_images", {}).items())
             + (f" (from `{source}`)" if source else ""), "", *epsilon_lines(report),
             *([transfer_line(report), ""] if transfer else []),
             "| row | identity test | signal / noise (within a dataset) | same-dataset AUC | stability | lift | "
             + "".join(f"{name.replace('_', ' ')} | " for name in extra) + "verdict |",
             "| --- | --- | --- | --- | --- | --- | " + "--- | " * len(extra) + "--- |"]
    for name, figures in report["metrics"].items():
        cells = []
        for key in (*VERDICT_FIGURES, "same_dataset_auc", "closest_stability", "logdet_lift", *extra):
            cell = transfer_cell(figures, key) if key in extra else with_range(figures, key)
            if key == "signal_to_noise" and figures.get("signal_to_noise_across") is not None:
                cell += f"; across datasets {figures['signal_to_noise_across']:.2f}" + (
                    " (by construction: other images)" if row_view(name) == "probe" else "")
            cells.append(cell)
        bold = "**" if name == report.get("default_metric") else ""
        lines.append(f"| {bold}{name}{bold} | " + " | ".join(cells) + f" | {answer(report, name)} |")
    return "\n".join(lines) + "\n"


def transfer_line(report: dict) -> str:
    """What a report's transfer columns are: the kind of transfer, and whether ranges and within-dataset figures are
    there (a report written before they were measured has neither)."""
    transfer, rows = report["transfer"], list(report["metrics"].values())
    ranged = any((figures.get("intervals") or {}).get("transfer_rank_correlation") for figures in rows)
    within = any("transfer_rank_correlation_within" in figures for figures in rows)
    return (f"Transfer: {transfer['kind']}" + (f", {transfer['epochs']:g} epoch(s)" if transfer["kind"] == "finetune"
                                               else "")
            + "; rank correlation of d[b, t] with the transfer gain (negative: closer transfers better) and the share "
            "of targets whose closest baseline is the best source" + (", each with its seed-resampling range"
                                                                       if ranged else "")
            + ("; this suite has several datasets, so each is also given over the baselines from the target's own "
               "dataset" if within else "") + "." + split_half_text(transfer.get("split_half")))


def epsilon_lines(report: dict) -> list[str]:
    """``["ε-approximations: ...", ""]``: how many of the report's zoo networks meet the source's precondition, per
    dataset (empty for a report that predates the count)."""
    summary = report.get("epsilon")
    if not summary or not summary["networks"]:
        return []
    parts = [f"{name} {group['met']}/{group['networks']} (ε = {group['epsilon']:g}, test accuracy "
             f"{group['min_accuracy']:.3f}-{group['mean_accuracy']:.3f} min-mean"
             + "".join(f", {why} {count}" for why, count in sorted(group.get("stopped", {}).items())) + ")"
             for name, group in summary["by_dataset"].items()]
    return [f"ε-approximations (test accuracy ≥ 1 − ε), zoo networks of the TA-NAS rows: {summary['met']} of "
            f"{summary['networks']}; " + "; ".join(parts), ""]


def read_report(name: str) -> dict:
    """The validation report in the JSON file ``name``; ``TanasError`` naming the fix when it is not one."""
    try:
        report = json.loads(Path(name).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TanasError(f"cannot read the report {name}: {error}; give a file written by "
                         "`validate distances --json`") from None
    if not isinstance(report, dict) or "metrics" not in report:
        raise TanasError(f"{name} is not a validation report (no 'metrics'); give a file written by "
                         "`validate distances --json`")
    return report


def curve_markdown(reports: list[dict], rows: tuple[str, ...] = ("frechet", "logdet")) -> str:
    """Reports of one view across presets as one Markdown table, a line per (report, row): the preset, what it trains
    for (``Preset.budget``), the share of its networks that are epsilon-approximations and their mean test
    accuracy, then the row's verdict figures with their seed-resampling ranges and its answer. The curve of the
    source's preconditions: how far training budget, epsilon and averaging take a row."""
    lines = ["| suite | preset | trained for | ε met | mean accuracy | head (penalty) | row | twins | "
             "identity test | signal / noise (within a dataset) | verdict |", "| --- " * 11 + "|"]
    for report in reports:
        summary = report.get("epsilon") or {}
        accuracy = [group["mean_accuracy"] for group in summary.get("by_dataset", {}).values()]
        preset = report_preset(report)
        trained = preset.budget if preset else "?"
        head = head_settings(report)
        for row in [name for name in report["metrics"] if name.split("@")[0] in rows]:
            cells = [with_range(report["metrics"][row], key) for key in VERDICT_FIGURES]
            lines.append(f"| `{report['suite']}` | `{report['preset']}` | {trained} | "
                         f"{summary.get('met', 0)}/{summary.get('networks', 0)} | "
                         f"{np.mean(accuracy) if accuracy else float('nan'):.3f} | {head} | {row.split('@')[0]} | "
                         f"{row_reference(row)} | " + " | ".join(cells) + f" | {answer(report, row)} |")
    return "\n".join(lines) + "\n" + trend_markdown(budget_trend(reports, rows))


def trend_markdown(trends: list[dict]) -> str:
    """``curve.budget_trend`` as a paragraph and a Markdown table (nothing when no row has two budgets): each
    verdict figure at each budget, its fitted change per tenfold budget, and the budget its line would need."""
    if not trends:
        return ""
    lines = ["", "**Trend** (`curve.budget_trend`): each figure against log10 of the training images one network "
             "sees (as its preset asks; the epsilon policy's reports have no fixed budget and are left out), fitted "
             "per row, twins and averaging; with two budgets, the line through them. Read it with the ranges above: "
             "a trend from two or three points is a direction, not a law.", "",
             "| suite | Fisher | row | twins | averaged | training images | " + " | ".join(
                 f"{label} | per 10x | goal {GOALS[key]:g} at" for key, label in VERDICT_HEADERS.items()) + " |",
             "| --- " * 12 + "|"]
    for trend in trends:
        cells = []
        for key in VERDICT_HEADERS:
            figure = trend["figures"][key]
            cells += [" → ".join("n/a" if v is None else f"{v:.3f}" for v in figure["values"]),
                      "n/a" if figure["per_tenfold"] is None else f"{round(figure['per_tenfold'], 3) + 0.0:+.3f}",
                      _goal_budget(figure["goal"], trend["budgets"][-1])]
        lines.append(f"| `{trend['suite']}` | {trend['head']} | {trend['row']} | {trend['twins']} | "
                     f"{'yes' if trend['averaged'] else 'no'} | "
                     + " → ".join(f"{budget:,.0f}" for budget in trend["budgets"]) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _goal_budget(goal, largest: float) -> str:
    if goal is None:
        return "n/a"
    if goal == "met":
        return "met"
    if goal == "never":
        return "never (the line falls)"
    return f"~10^{goal:.1f} images (10^{goal - np.log10(largest):.1f} x the largest)"


def run_curve(args) -> int:
    """Print the curve table (``curve_markdown``) of the reports of ``args.reports``, in the order given."""
    print(curve_markdown([read_report(name) for name in args.reports]), end="")
    return 0


def run_table(args) -> int:
    """Print (or write ``--out``) every report of ``args.reports`` as Markdown, in the order given."""
    parts = [report_markdown(read_report(name), name) for name in args.reports]
    text = "\n".join(parts)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def validate_request(args) -> ValidateRequest:
    """The ``ValidateRequest`` of ``validate distances`` (``--metrics`` lists the metrics to report)."""
    return ValidateRequest.from_dict(dict(measurement_settings(args), suite=args.suite, preset=args.preset,
                                          metrics=args.metrics, views=args.views, references=args.references,
                                          transfer=args.transfer, transfer_epochs=args.transfer_epochs,
                                          transfer_images=args.transfer_images))


def figure_row(name: str, figures: dict) -> dict:
    """One printed row of the report: every figure, the verdict's two with their seed-resampling range."""
    return dict(metric=name, **{key: with_range(figures, key) for key in figures if key != "intervals"})


def print_columns(report: dict, row: str) -> None:
    """The identity test of ``row`` column by column: how often the twin ranks first (95 % interval), and what
    beats it (``*``: a baseline whose labels refine the target's)."""
    columns = report.get("columns", {}).get(row)
    if not columns:
        return
    print(f"\n{row}, column by column: does the target's twin ({REFERENCE_TEXT[row_reference(row)]}) rank closest?")
    print_table([dict(target=target, twin_first=f"{c['hits']}/{c['cases']}",
                      interval=f"[{c['low']:.2f}, {c['high']:.2f}]",
                      beaten_by=", ".join(f"{name}{'*' if name in c['refined_by'] else ''} {count}"
                                          for name, count in list(c["beaten_by"].items())[:3]) or "-")
                 for target, c in columns.items()])
    print("(*: its labels refine the target's; interval: Wilson 95 %, too narrow, as two twins share a network)")


def run_validate(args) -> int:
    """Compute the report, print one row per metric with each goal met or not, write ``--json``."""
    from tanas_core.distances.validation import validate_distances

    request = validate_request(args)
    with ProgressPrinter() as printer:
        report = validate_distances(request, make_context(args, workspace(args), **printer.sinks()))
    print(f"\ndistance validation: suite {report['suite']}, {', '.join(report['archs'])}, {report['seeds']} seed(s), "
          f"{report['replicates']} twin(s) per task and seed (retrained: same initial weights, other data; redraw: "
          f"the same network on other draws of the task's data), preset {report['preset']}")
    print_table([figure_row(name, figures) for name, figures in report["metrics"].items()])
    print("goals: " + ", ".join(f"{key} >= {goal:g}" for key, goal in GOALS.items())
          + "; [low, high]: seed-resampling range (2.5-97.5 percentiles; not a confidence interval: bench coverage)")
    for name, figures in report["metrics"].items():
        missed = [key for key, goal in GOALS.items() if figures[key] is not None and not figures[key] >= goal]
        open_figures = unsettled(figures)
        print(f"  {name}: " + ("every goal met" if not missed else "misses " + ", ".join(missed))
              + (f" (not settled: {', '.join(open_figures)} across its goal)" if open_figures else ""))
    print("\n".join(epsilon_lines(report)).strip())
    print(f"default metric (best identity test, then signal/noise): {report['default_metric']}")
    print_columns(report, report["default_metric"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0
