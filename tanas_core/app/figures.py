"""Plotly figures of the app's results: pure functions of arrays and event lists (no Streamlit), so they can be tested
and reused outside the app (a notebook, a report).

- ``heatmap_figure``: a distance matrix ``d[b, t]`` (rows: baselines, columns: targets), the closest baseline of each
  target starred;
- ``atlas_figure``: 2-D task coordinates (``task_distances.task_atlas``) coloured by dataset;
- ``alpha_figure`` / ``curves_figure``: a search's live event stream (``nas.search_events``);
- ``comparison_figure``: a repeated comparison's means with their intervals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_MARGIN = dict(l=10, r=10, t=50, b=10)
_FRACTION_TICKS = dict(tickmode="linear", tick0=0, dtick=0.2, tickformat=".1f")  # 0.0, 0.2, ... 1.0


def closest_rows(matrix: np.ndarray) -> list[int]:
    """Row index of the smallest entry of each column, ignoring the diagonal (a task is not its own baseline)."""
    matrix = np.asarray(matrix, dtype=float)
    masked = np.where(np.eye(len(matrix), dtype=bool), np.inf, matrix)
    return [int(row) for row in np.argmin(masked, axis=0)]


# A mark sits in the upper-right corner of its cell (in cell units from the centre), so the value printed in the
# cell stays readable.
_MARK_OFFSET = 0.3
_TIE_COLOUR = "#ff2d78"  # visible on every Viridis colour and on the white legend


def heatmap_figure(matrix: np.ndarray, tasks: list[str], title: str, closest: bool = True,
                   colorbar: str = "distance", ties: list[list[int]] | None = None, value: str = "d") -> go.Figure:
    """Heatmap of ``matrix [baselines, targets]`` with hover values (printed in the cells up to 10 tasks); the
    closest baseline of each target column (off the diagonal) is marked with a star, and ``ties[t]`` (rows of
    column ``t`` not separable from its closest baseline) with a ring, both in the cell's corner so its value stays
    readable, and both naming the value in their hover; ``value``: the hover's name of a cell's value. Cells sit
    at integer positions labelled with the task names."""
    matrix = np.asarray(matrix, dtype=float)
    readable, positions = len(tasks) <= 10, list(range(len(tasks)))
    names = [[(baseline, target) for target in tasks] for baseline in tasks]
    figure = go.Figure(go.Heatmap(z=matrix.tolist(), x=positions, y=positions, colorscale="Viridis",
                                  colorbar=dict(title=colorbar), text=np.vectorize(lambda v: f"{v:.2f}")(matrix),
                                  texttemplate="%{text}" if readable else None, customdata=names,
                                  hovertemplate="baseline %{customdata[0]}<br>target %{customdata[1]}<br>" + value
                                                + " = %{z:.4f}<extra></extra>"))
    rows = closest_rows(matrix) if closest and len(tasks) > 1 else []
    if rows:
        figure.add_trace(go.Scatter(
            x=[t + _MARK_OFFSET for t in positions], y=[r - _MARK_OFFSET for r in rows], mode="markers",
            name="closest baseline", marker=dict(symbol="star", size=12, color="white", line=dict(color="black",
                                                                                                   width=1)),
            customdata=[(tasks[t], tasks[r], matrix[r, t]) for t, r in enumerate(rows)],
            hovertemplate="closest baseline to %{customdata[0]}: %{customdata[1]}<br>" + value
                          + " = %{customdata[2]:.4f}<extra></extra>"))
    tied = [(t, b) for t, column in enumerate(ties or []) for b in column]
    if tied:
        figure.add_trace(go.Scatter(
            x=[t + _MARK_OFFSET for t, _ in tied], y=[b - _MARK_OFFSET for _, b in tied], mode="markers",
            name="tied with the closest (inside the noise)",
            marker=dict(symbol="circle-open", size=13, color=_TIE_COLOUR, line=dict(width=3)),
            customdata=[(tasks[t], tasks[b], matrix[b, t], tasks[rows[t]] if rows else "", matrix[rows[t], t]
                         if rows else np.nan) for t, b in tied],
            hovertemplate="%{customdata[1]} (" + value + " = %{customdata[2]:.4f}) is not separable from the "
                          "closest baseline of %{customdata[0]}, %{customdata[3]} (" + value
                          + " = %{customdata[4]:.4f})<extra></extra>"))
    axis = dict(tickmode="array", tickvals=positions, ticktext=tasks, range=[-0.5, len(tasks) - 0.5])
    figure.update_layout(title=title, xaxis=dict(title="target t (column)", **axis),
                         yaxis=dict(title="baseline b (row)", **dict(axis, range=[len(tasks) - 0.5, -0.5])),
                         height=520, margin=_MARGIN, legend=dict(orientation="h", y=-0.25))
    return figure


def atlas_figure(coordinates: np.ndarray, tasks: list[str], datasets: list[str]) -> go.Figure:
    """Scatter of 2-D task coordinates, one trace (colour) per dataset."""
    coordinates = np.asarray(coordinates)
    frame = pd.DataFrame(dict(x=coordinates[:, 0], y=coordinates[:, 1], task=tasks, dataset=datasets))
    figure = go.Figure()
    for dataset, group in frame.groupby("dataset"):
        figure.add_trace(go.Scatter(x=group.x, y=group.y, mode="markers+text", text=group.task, name=dataset,
                                    textposition="top center", marker=dict(size=12)))
    figure.update_layout(title="Task atlas (classical MDS of the symmetrised mean distances)", height=460,
                         xaxis_title="MDS 1", yaxis_title="MDS 2", margin=_MARGIN)
    return figure


def _round_offsets(alpha_events: list[dict]) -> dict[int, int]:
    """First x of each FUSE round, so the steps of consecutive rounds follow each other on one axis."""
    offsets, total = {}, 0
    for event in alpha_events:
        offsets.setdefault(event["round"], total)
        total = max(total, offsets[event["round"]] + event["step"])
    return offsets


def alpha_figure(events: list[dict]) -> go.Figure:
    """Softmax weight of each candidate over the FUSE steps (one line per candidate of each round)."""
    figure = go.Figure()
    rows = [e for e in events if e.get("type") == "alpha"]
    offsets = _round_offsets(rows)
    for round_index in sorted(offsets):
        in_round = [e for e in rows if e["round"] == round_index]
        for c, candidate in enumerate(in_round[0]["candidates"]):
            figure.add_trace(go.Scatter(x=[offsets[round_index] + e["step"] for e in in_round],
                                        y=[e["weights"][c] for e in in_round], mode="lines+markers",
                                        marker=dict(size=5), name=f"round {round_index}: {candidate}"))
    figure.update_layout(title="softmax(α) per candidate", xaxis_title="step", yaxis_title="weight",
                         yaxis=dict(range=[0, 1], **_FRACTION_TICKS), xaxis=dict(rangemode="tozero"), height=380,
                         margin=_MARGIN)
    return figure


def curves_figure(events: list[dict]) -> go.Figure:
    """Training / validation loss and validation accuracy over steps (FUSE) or candidates (random search)."""
    figure = go.Figure()
    rows = [e for e in events if e.get("type") in ("alpha", "candidate")]
    x = list(range(1, len(rows) + 1))
    if rows and rows[0]["type"] == "alpha":
        figure.add_trace(go.Scatter(x=x, y=[e["train_loss"] for e in rows], name="train loss (c̄)",
                                    mode="lines+markers", marker=dict(size=5)))
        figure.add_trace(go.Scatter(x=x, y=[e["val_loss"] for e in rows], name="val loss (c̄)",
                                    mode="lines+markers", marker=dict(size=5)))
    figure.add_trace(go.Scatter(x=x, y=[e["val_accuracy"] for e in rows], name="val accuracy", yaxis="y2",
                                mode="lines+markers", marker=dict(size=5)))
    figure.update_layout(title="losses and validation accuracy", xaxis_title="update", height=380,
                         yaxis=dict(title="loss", rangemode="tozero"),
                         yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1],
                                     **_FRACTION_TICKS),
                         margin=_MARGIN)
    return figure


def comparison_figure(summary: list[dict], figure: str = "test_accuracy") -> go.Figure:
    """Each method's mean ``figure`` with its 95 % interval as an error bar (``Comparison.summary`` rows); a method
    measured once has a point without a bar."""
    def half(row, side):
        bound = row[f"{figure}_{side}"]
        return 0.0 if bound != bound else abs(bound - row[figure])

    figure_ = go.Figure(go.Scatter(
        x=[row["method"] for row in summary], y=[row[figure] for row in summary], mode="markers",
        marker=dict(size=11), error_y=dict(type="data", symmetric=False, array=[half(r, "high") for r in summary],
                                           arrayminus=[half(r, "low") for r in summary]),
        hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    figure_.update_layout(title=f"{figure.replace('_', ' ')}: mean and 95 % interval over the repeats",
                          yaxis=dict(title=figure.replace("_", " "), **(_FRACTION_TICKS if "accuracy" in figure
                                                                         else {})),
                          height=380, margin=_MARGIN)
    return figure_
