"""The plotly figure builders, without Streamlit: the data each figure carries is the data it was given."""
from __future__ import annotations

import numpy as np
import pytest

from tanas_core.app.figures import alpha_figure, atlas_figure, closest_rows, curves_figure, heatmap_figure

pytestmark = pytest.mark.unit

TASKS = ["a", "b", "c", "d"]
MATRIX = np.array([[0.0, 0.5, 0.9, 0.2],
                   [0.1, 0.0, 0.3, 0.8],
                   [0.7, 0.4, 0.0, 0.6],
                   [0.9, 0.2, 0.1, 0.0]])


def alpha_event(round_index: int, step: int, weights: list[float], candidates: list[str]) -> dict:
    return dict(type="alpha", method="fuse", round=round_index, step=step, candidates=candidates, weights=weights,
                train_loss=1.0 / step, val_loss=1.5 / step, val_accuracy=0.1 * step)


def test_the_figures_module_needs_no_streamlit():
    import tanas_core.app.figures as figures

    assert "streamlit" not in open(figures.__file__).read()


def test_heatmap_values_are_the_matrix_and_stars_mark_the_closest_off_diagonal_baseline():
    figure = heatmap_figure(MATRIX, TASKS, "title")
    heatmap, stars = figure.data
    assert np.allclose(np.asarray(heatmap.z, dtype=float), MATRIX)
    assert list(figure.layout.xaxis.ticktext) == TASKS and list(figure.layout.yaxis.ticktext) == TASKS
    assert list(heatmap.x) == list(figure.layout.xaxis.tickvals) == [0, 1, 2, 3]
    # per target column: the smallest distance from another task (the zero diagonal never wins)
    assert closest_rows(MATRIX) == [1, 3, 3, 0]
    # each star in its cell's corner (inside the cell, off its centre, where the value is printed)
    assert all(0 < x - t < 0.5 for t, x in enumerate(stars.x))
    assert [round(y) for y in stars.y] == [1, 3, 3, 0] and all(0 < round(y) - y < 0.5 for y in stars.y)
    assert stars.name == "closest baseline"
    # its hover names the baseline and its value
    assert [tuple(c) for c in stars.customdata] == [("a", "b", 0.1), ("b", "d", 0.2), ("c", "d", 0.1),
                                                    ("d", "a", 0.2)]
    assert "%{customdata[2]:.4f}" in stars.hovertemplate


def test_heatmap_tied_cells_are_ringed_in_a_colour_the_legend_shows_with_both_values_in_the_hover():
    figure = heatmap_figure(MATRIX, TASKS, "title", ties=[[2], [], [], []])
    ring = figure.data[2]
    assert ring.name.startswith("tied with the closest") and ring.marker.color not in ("white", "#ffffff")
    assert round(ring.x[0]) == 0 and round(ring.y[0]) == 2 and ring.x[0] != 0
    assert tuple(ring.customdata[0]) == ("a", "c", 0.7, "b", 0.1)  # the tied baseline and the closest, with values


def test_heatmap_without_stars_for_the_std_matrix_and_single_task():
    assert len(heatmap_figure(MATRIX, TASKS, "std", closest=False).data) == 1
    assert len(heatmap_figure(np.zeros((1, 1)), ["a"], "one task").data) == 1


def test_atlas_one_trace_per_dataset_with_its_tasks_and_coordinates():
    coordinates = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    figure = atlas_figure(coordinates, TASKS, ["mnist", "cifar10", "mnist", "cifar10"])
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"mnist", "cifar10"}
    assert list(traces["mnist"].text) == ["a", "c"]
    assert list(traces["mnist"].x) == [0.0, 4.0] and list(traces["mnist"].y) == [1.0, 5.0]
    assert list(traces["cifar10"].text) == ["b", "d"]


def test_alpha_figure_one_line_per_candidate_and_round_on_one_step_axis():
    events = [alpha_event(1, step, [0.5 + 0.1 * step, 0.5 - 0.1 * step], ["g1", "g2"]) for step in (1, 2, 3)]
    events += [dict(type="round_done", round=1)]
    events += [alpha_event(2, step, [0.3, 0.3, 0.4], ["g1", "g3", "g4"]) for step in (1, 2)]
    figure = alpha_figure(events)
    assert [trace.name for trace in figure.data] == ["round 1: g1", "round 1: g2", "round 2: g1", "round 2: g3",
                                                     "round 2: g4"]
    assert list(figure.data[0].x) == [1, 2, 3]
    assert np.allclose(figure.data[0].y, [0.6, 0.7, 0.8]) and np.allclose(figure.data[1].y, [0.4, 0.3, 0.2])
    assert list(figure.data[2].x) == [4, 5]  # round 2 continues after round 1's last step
    assert "softmax" in figure.layout.title.text


def test_alpha_figure_is_empty_before_the_first_step():
    assert len(alpha_figure([dict(type="run_started", run_id="x")]).data) == 0


def test_curves_losses_for_fuse_accuracy_only_for_random_search():
    fuse = curves_figure([alpha_event(1, step, [0.5, 0.5], ["g1", "g2"]) for step in (1, 2)])
    assert [trace.name for trace in fuse.data] == ["train loss (c̄)", "val loss (c̄)", "val accuracy"]
    assert np.allclose(fuse.data[0].y, [1.0, 0.5]) and np.allclose(fuse.data[2].y, [0.1, 0.2])
    random = curves_figure([dict(type="candidate", step=s, val_accuracy=0.2 * s) for s in (1, 2, 3)])
    assert [trace.name for trace in random.data] == ["val accuracy"]
    assert list(random.data[0].x) == [1, 2, 3] and np.allclose(random.data[0].y, [0.2, 0.4, 0.6])
