"""The trend of the source's preconditions: how a report row's verdict figures move with the training budget of its
zoo, and the budget at which that trend would meet the goals (``validate curve`` prints it under the curve).

The budget is the training images one network sees, as its preset asks (training split x epochs, the averaging
epochs included, averaged over the report's architectures). A trend is a least-squares line of a figure against
log10 of the budget, fitted per row, reference and averaging on/off over reports of one suite; with two budgets it is
the line through them. Reports of the epsilon policy (epochs differ per network) and of presets with every image
(their count depends on the task) have no fixed budget and stay out of it.
"""
from __future__ import annotations

import numpy as np

from tanas_core.distances.validation import GOALS, VERDICT_FIGURES, row_reference
from tanas_core.registry import PRESETS


def images_seen(preset, archs) -> float | None:
    """Training images one network of ``preset`` sees, averaged over ``archs`` (``None`` when it is not fixed: the
    epsilon policy, or a preset that trains on every image)."""
    if preset.max_epochs or not preset.sizes.train:
        return None
    return preset.sizes.train * float(np.mean([preset.epochs_for(arch) + preset.averaging_epochs for arch in archs]))


def report_preset(report: dict):
    """The registered ``Preset`` a report's zoo was trained with, or ``None`` for a preset no longer registered."""
    return PRESETS[report["preset"]] if report["preset"] in PRESETS else None


def budget_trend(reports: list[dict], rows: tuple[str, ...] = ("frechet", "logdet")) -> list[dict]:
    """One entry per (suite, head, row, reference, averaged) with reports at two or more budgets: ``{suite, head,
    row, twins, averaged, budgets: [images, ...] ascending, figures: {figure: {values, per_tenfold, goal}}}``;
    ``head``: the refitted head's settings and M as ``head (penalty), M`` (reports of other Fisher settings are other
    lines). ``per_tenfold``: the fitted change of the figure per tenfold budget; ``goal``: ``"met"`` (at the
    largest budget), ``"never"`` (the line does not rise toward it) or log10 of the budget at which the fitted line
    meets the figure's goal (``GOALS``); ``None`` where a report lacks the figure. Reports at one budget (another
    zoo of the same preset) are each a point of the line, never one dropped for the other."""
    groups: dict[tuple, list[tuple[float, dict]]] = {}
    for report in reports:
        preset = report_preset(report)
        budget = images_seen(preset, report["archs"]) if preset else None
        if budget is None:
            continue
        for row, figures in report["metrics"].items():
            base = row.split("@")[0]
            if base in rows:
                key = (report["suite"], fisher_settings(report), base, row_reference(row), preset.averaging_epochs > 0)
                groups.setdefault(key, []).append((budget, figures))
    trends = []
    for (suite, head, row, twins, averaged), points in groups.items():
        if len({budget for budget, _ in points}) < 2:
            continue
        points = sorted(points, key=lambda point: point[0])  # stable: reports at one budget keep their order
        budgets = [budget for budget, _ in points]
        figures = {name: _trend([measured.get(name) for _, measured in points], budgets, GOALS[name])
                   for name in VERDICT_FIGURES}
        trends.append(dict(suite=suite, head=head, row=row, twins=twins, averaged=averaged, budgets=budgets,
                           figures=figures))
    return trends


def head_settings(report: dict) -> str:
    """A report's head as its tables name it: the head and the penalty of its fit, ``"refit (0.3)"``."""
    fisher = report.get("fisher", {})
    return f"{fisher.get('head', '?')} ({fisher.get('head_weight_decay', float('nan')):g})"


def fisher_settings(report: dict) -> str:
    """A report's Fisher settings as its tables name them: ``"refit (0.3), M = 800"``."""
    return f"{head_settings(report)}, M = {report.get('fisher', {}).get('samples', '?')}"


def _trend(values: list, budgets: list[float], goal: float) -> dict:
    """The least-squares line of ``values`` against log10 ``budgets`` and where it meets ``goal``."""
    if any(value is None for value in values):
        return dict(values=values, per_tenfold=None, goal=None)
    slope, intercept = np.polyfit(np.log10(budgets), np.asarray(values, dtype=float), 1)
    if values[-1] >= goal:  # the last report at the largest budget
        reached = "met"
    elif slope <= 0:
        reached = "never"
    else:
        reached = float((goal - intercept) / slope)
    return dict(values=values, per_tenfold=float(slope), goal=reached)
