"""A validation report's figures as table cells: one formatting for the CLI's tables, the docs' Markdown (``validate
table``) and the Distances page, so a figure reads the same everywhere."""
from __future__ import annotations

from tanas_core.distances.validation import VERDICT_FIGURES, unsettled, verdict

OTHER_FIGURES = {"same_dataset_auc": "same-dataset AUC", "closest_stability": "stability", "logdet_lift": "lift"}
TRANSFER_FIGURES = {"transfer_rank_correlation": "transfer rank correlation",
                    "closest_is_best_source": "closest is best source"}
VERDICT_HEADERS = {"identity_top1": "identity test", "signal_to_noise": "signal / noise (within a dataset)"}


def shown(value) -> str:
    """A figure as a cell: three decimals, or ``n/a`` when the report could not measure it."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def with_range(figures: dict, key: str) -> str:
    """A report row's figure ``key`` as shown in a table, with its seed-resampling range when it has one."""
    bounds = (figures.get("intervals") or {}).get(key)
    return shown(figures.get(key)) + (f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else "")


def transfer_cell(figures: dict, key: str) -> str:
    """A transfer figure of a report row with its seed-resampling range, and for a suite of several datasets the same
    figure over the baselines from the target's own dataset (``*_within``), where another dataset's network does not
    make the figure easy."""
    cell = with_range(figures, key)
    if f"{key}_within" in figures:
        cell += f"; within a dataset {with_range(figures, f'{key}_within')}"
    return cell


def answer(report: dict, row: str) -> str:
    """The verdict of ``row`` as a table shows it: yes / no / not measured, and ", not settled" when a figure's
    seed-resampling range reaches across its goal."""
    result, _ = verdict(report, row)
    return result + ("" if result == "not measured" or not unsettled(report["metrics"][row]) else ", not settled")


def verdict_rows(report: dict) -> list[dict]:
    """One row per report row (view, metric, reference): the verdict's two figures with their ranges, and the
    verdict."""
    return [{"row": name, **{VERDICT_HEADERS[key]: with_range(figures, key) for key in VERDICT_FIGURES},
             "verdict": answer(report, name)} for name, figures in report["metrics"].items()]


def other_rows(report: dict) -> list[dict]:
    """One row per report row: the figures outside the verdict (and transfer's two when the report measured it)."""
    transfer = TRANSFER_FIGURES if report.get("transfer") else {}
    return [{"row": name, **{header: shown(figures.get(key)) for key, header in OTHER_FIGURES.items()},
             **{header: transfer_cell(figures, key) for key, header in transfer.items()}}
            for name, figures in report["metrics"].items()]


def split_half_text(split: dict | None) -> str:
    """The transfer figures' noise reference in words (``transfer_split_half``), or nothing for a report without it."""
    if not split:
        return ""
    figures = f"{shown(split['transfer_rank_correlation'])} / {shown(split['closest_is_best_source'])}"
    if "transfer_rank_correlation_within" in split:
        figures += (f" (within a dataset {shown(split['transfer_rank_correlation_within'])} / "
                    f"{shown(split['closest_is_best_source_within'])})")
    return (" Noise reference: one half of the seeds' own transfer ranking, scored against the other half as a "
            f"distance is, reaches {figures} (half the seeds a side, so a little below what the whole zoo's ranking "
            "would reach): where it is weak, no distance can score well.")
