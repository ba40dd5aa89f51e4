"""Task distances that can be trusted (issue 12): same-initialisation replicates, held-out probe images, scale-free
and permutation-robust metrics, and a report that can say "no". Runs on scikit-learn's bundled digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tanas_core.data.datasets import load_dataset
from tanas_core.data.probe_images import probe_capacity, probe_mask, probe_selection
from tanas_core.data.suites import resolve_suite
from tanas_core.data.tasks import make_splits, make_task, refines
from tanas_core.distances.metrics import (
    diagonal_summary,
    frechet_distance,
    logdet_distance,
    logdet_lift,
    mass_frechet_distance,
    scaled_logdet_distance,
    sorted_frechet_distance,
    summary_distance,
)
from tanas_core.distances.validation import (
    GOALS,
    closest_stability,
    figure_intervals,
    identity_columns,
    identity_top1,
    metric_report,
    row_name,
    same_dataset_auc,
    signal_to_noise,
    validate_distances,
    verdict,
)
from tanas_core.fisher.matrices import diagonal_fisher, select_parameters
from tanas_core.intervals import proportion_interval
from tanas_core.networks import build_network
from tanas_core.requests import DistanceRequest, FisherConfig, ValidateRequest
from tanas_core.training import trainer as training
from tanas_core.training.checkpoints import data_seed
from tanas_core.training.zoo import train_zoo_network
from tanas_core.workspace.context import quiet_context
from tanas_core.workspace.records import DistanceResult

TASKS = (make_task("digits-zero", "digits", [["0"]], other=True),
         make_task("digits-low-high", "digits", [["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]]),
         make_task("digits-10class", "digits", [[str(d)] for d in range(10)]))


@pytest.fixture
def digits_workspace(workspace):
    for task in TASKS:
        workspace.save_task(task)
    return workspace


# ---------------------------------------------------------------------------------------------- replicates, probe

def test_a_replicate_starts_from_its_tasks_initial_weights_and_sees_other_data(digits_workspace, tiny_preset,
                                                                              monkeypatch):
    started = {}

    def capture(model, splits, *args, **kwargs):  # record the network as training would start, then stop
        started[(splits.task.name, splits.seed)] = ({k: v.clone() for k, v in model.state_dict().items()},
                                                    splits.indices["train"].copy())
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_model", capture)
    suite = resolve_suite("custom", digits_workspace)
    for task in TASKS[:2]:
        for replicate in (0, 1):
            with pytest.raises(KeyboardInterrupt):
                train_zoo_network(suite, task, "vgg16", tiny_preset, 3, "cpu", replicate=replicate)
    (zero, zero_data), (twin, twin_data) = started[("digits-zero", 3)], started[("digits-zero", data_seed(3, 1))]
    other, _ = started[("digits-low-high", 3)]
    backbone = [name for name in zero if name.startswith("backbone.")]
    assert all(torch.equal(zero[name], twin[name]) for name in zero)  # same initial weights, head included
    assert all(torch.equal(zero[name], other[name]) for name in backbone)  # every task of a seed: one backbone
    assert not np.array_equal(np.sort(zero_data), np.sort(twin_data))  # other data


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_probe_images_are_in_no_training_validation_or_head_fit_split(task, tiny_preset):
    dataset = load_dataset("digits")
    held_out = probe_mask(dataset)
    positions, labels = probe_selection(task, probe_capacity(task, dataset), dataset)
    assert held_out[positions].all() and len(set(positions)) == len(positions)
    assert np.bincount(labels).min() == np.bincount(labels).max()  # class-balanced
    for seed in (0, 1, data_seed(0, 1), data_seed(1, 2)):
        splits = make_splits(task, tiny_preset.sizes, seed)  # seed 0's train split is every head's fit set
        for split in ("train", "val"):
            assert not held_out[splits.indices[split]].any(), (seed, split)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_a_data_draw_is_other_held_out_images_of_the_task_and_its_head_sees_other_training_images(task, tiny_preset):
    from tanas_core.data.tasks import make_probe

    dataset = load_dataset("digits")
    count = min(probe_capacity(task, dataset), probe_capacity(task, dataset, draw=1)) // task.num_outputs * \
        task.num_outputs
    first, first_labels = probe_selection(task, count, dataset, draw=1)
    second, _ = probe_selection(task, count, dataset, draw=2)
    # draws >= 1 come from the test images (no split trains on them, none is in draw 0's training-image probe set)
    assert first.max() < len(dataset.y_test) and len(set(first)) == len(first) and not np.array_equal(first, second)
    mapping = task.label_map(dataset.class_names)
    assert np.array_equal(mapping[dataset.y_test[first]], first_labels)
    assert np.bincount(first_labels).min() == np.bincount(first_labels).max()  # class-balanced
    images, labels = make_probe(task, count, draw=1)
    ours = make_probe(task, count)[0]
    assert images.shape == ours.shape and not torch.equal(images, ours) and torch.equal(labels,
                                                                                        torch.from_numpy(first_labels))
    # its head is fitted on the training split of another data seed
    heads = [make_splits(task, tiny_preset.sizes, data_seed(0, draw)).indices["train"] for draw in (0, 1)]
    assert not np.array_equal(np.sort(heads[0]), np.sort(heads[1]))
    with pytest.raises(ValueError, match="test images for data draw 1"):
        probe_selection(task, probe_capacity(task, dataset, draw=1) + task.num_outputs, dataset, draw=1)


# ---------------------------------------------------------------------------------------------- metrics

def _permute_last_block(model, generator) -> None:
    """Permute the output channels of VGG's last conv (and its BatchNorm, and the head's inputs): the same function,
    with the units of two backbone tensors in another order (the last block holds most of the Fisher mass)."""
    convs = [i for i, layer in enumerate(model.backbone) if isinstance(layer, torch.nn.Conv2d)]
    conv, norm = model.backbone[convs[-1]], model.backbone[convs[-1] + 1]
    order = torch.randperm(conv.out_channels, generator=generator)
    with torch.no_grad():
        conv.weight.copy_(conv.weight[order])
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            tensor.copy_(tensor[order])
        model.head.weight.copy_(model.head.weight[:, order])


@pytest.mark.unit
def test_permutation_robust_metrics_ignore_the_order_of_a_layers_units():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_network("vgg16", 3, 1, 0.125)
    inputs, targets = torch.randn(24, 1, 32, 32, generator=generator), torch.randint(0, 3, (24,), generator=generator)
    before = diagonal_fisher(model, inputs, targets)
    outputs = model.eval()(inputs)
    _permute_last_block(model, generator)
    assert torch.allclose(model.eval()(inputs), outputs, atol=1e-5)  # the same function
    after = diagonal_fisher(model, inputs, targets)
    segments = [p.numel() for _, p in select_parameters(model, "backbone")]
    assert frechet_distance(before, after) > 0.01  # eq. 8 sees the new unit order
    assert sorted_frechet_distance(before, after, segments) < 1e-3
    assert mass_frechet_distance(before, after, segments) < 1e-3


@pytest.mark.unit
@pytest.mark.parametrize("metric, pair", [("logdet", lambda b, t, seg: logdet_distance(b, t, 1e-3)),
                                          ("logdet-scaled", lambda b, t, seg: scaled_logdet_distance(b, t, 1e-3)),
                                          ("frechet", lambda b, t, seg: frechet_distance(b, t)),
                                          ("frechet-sorted", sorted_frechet_distance),
                                          ("frechet-mass", mass_frechet_distance)])
def test_batched_summary_distances_equal_the_per_pair_metrics(metric, pair):
    # what the bootstrap computes for many resamples at once, against the per-pair functions one by one
    generator = torch.Generator().manual_seed(3)
    segments = [7, 1, 12, 20]
    baselines = torch.rand(5, 40, generator=generator, dtype=torch.float64) ** 3
    target = torch.rand(40, generator=generator, dtype=torch.float64) ** 3
    batched = summary_distance(metric, diagonal_summary(metric, baselines, segments, 1e-3),
                               diagonal_summary(metric, target, segments, 1e-3)[None])
    reference = torch.tensor([pair(b, target, segments) for b in baselines], dtype=torch.float64)
    torch.testing.assert_close(batched, reference, rtol=1e-9, atol=1e-12)
    # the bootstrap's float32 resamples: float64 distances within single precision of the per-pair metrics
    single = summary_distance(metric, diagonal_summary(metric, baselines.float(), segments, 1e-3),
                              diagonal_summary(metric, target.float(), segments, 1e-3)[None])
    assert single.dtype == torch.float64
    torch.testing.assert_close(single, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.unit
def test_scale_free_log_det_ignores_a_constant_factor_that_literal_eq5_turns_into_a_distance():
    fisher = torch.rand(500, generator=torch.Generator().manual_seed(1)) * 1e-4
    assert logdet_distance(fisher, 100 * fisher, 1e-3) > 1.0
    assert scaled_logdet_distance(fisher, 100 * fisher, 1e-3) < 1e-9
    assert logdet_lift(fisher * 1e-6, 1e-3) < 0.01 < 2 < logdet_lift(fisher * 1e3, 1e-3)


# ---------------------------------------------------------------------------------------------- the report

def _result(matrices, replicates, suite="s", tasks=("a", "b", "c")) -> DistanceResult:
    matrices, replicates = np.asarray(matrices, float), np.asarray(replicates, float)
    return DistanceResult(suite, "vgg16", "frechet", 0.0, list(range(len(matrices))), list(tasks), matrices,
                          np.full(len(tasks), np.nan), 0.0, replicates=replicates)


@pytest.mark.unit
def test_the_identity_test_ranks_an_exact_copy_first_and_a_scrambled_twin_last():
    # d[b, t] between different tasks ~ 0.5; an exact copy of t is at 0, a shuffled-label twin further than all
    rng = np.random.default_rng(0)
    matrices = 0.4 + 0.2 * rng.random((2, 3, 3))
    matrices[:, range(3), range(3)] = 0
    copies, scrambled = np.zeros((2, 3, 1)), np.full((2, 3, 1), 0.9)
    assert identity_top1([_result(matrices, copies)]) == 1.0
    assert identity_top1([_result(matrices, scrambled)]) == 0.0
    assert signal_to_noise([_result(matrices, np.full((2, 3, 1), 0.1))]) == pytest.approx(
        np.median([np.median([matrices.mean(0)[b, t] for b in range(3) if b != t]) / 0.1 for t in range(3)]))


@pytest.mark.unit
def test_signal_to_noise_within_a_dataset_leaves_out_the_baselines_from_other_datasets():
    # tasks a, b on dataset X and c, d on Y: other-dataset baselines far (5), same-dataset ones near (0.3), twins 0.1
    tasks = ("a", "b", "c", "d")
    datasets = dict(a="X", b="X", c="Y", d="Y")
    matrices = np.array([[[0.0 if b == t else 0.3 if datasets[tasks[b]] == datasets[tasks[t]] else 5.0
                           for t in range(4)] for b in range(4)]] * 2)
    result = _result(matrices, np.full((2, 4, 1), 0.1), tasks=tasks)
    assert signal_to_noise([result], datasets) == pytest.approx(3.0)  # 0.3 / 0.1: the task signal
    assert signal_to_noise([result], datasets, same=False) == pytest.approx(50.0)  # 5 / 0.1
    assert signal_to_noise([result]) == pytest.approx(50.0)  # all three baselines: median 5, as before
    alone = dict(a="X", b="Y", c="Z", d="W")  # no same-dataset baseline anywhere: nothing to measure
    assert np.isnan(signal_to_noise([result], alone))
    report = metric_report([result], datasets, 0.0)
    assert report["signal_to_noise"] == pytest.approx(3.0) and report["signal_to_noise_across"] == pytest.approx(50.0)
    assert metric_report([result], dict.fromkeys(tasks, "X"), 0.0)["signal_to_noise_across"] is None


@pytest.mark.unit
def test_the_verdicts_figures_get_intervals_over_resampled_seeds_that_a_close_call_reports_as_not_settled():
    rng = np.random.default_rng(1)
    matrices = 0.4 + 0.2 * rng.random((4, 3, 3))
    matrices[:, range(3), range(3)] = 0
    twins = 0.25 + 0.3 * rng.random((4, 3, 2))  # some seeds' twins lose to a baseline, some win
    result = _result(matrices, twins)
    intervals = figure_intervals([result])
    for name, figure in (("identity_top1", identity_top1([result])), ("signal_to_noise", signal_to_noise([result]))):
        low, high = intervals[name]
        assert low <= figure <= high and low < high  # the seeds differ, so resampling them moves the figure
    # every seed alike: nothing moves; one seed: nothing to resample
    alike = _result(np.repeat(matrices[:1], 4, axis=0), np.repeat(twins[:1], 4, axis=0))
    assert figure_intervals([alike])["signal_to_noise"] == [signal_to_noise([alike])] * 2
    assert figure_intervals([result.select_seeds([2])]) == dict(identity_top1=None, signal_to_noise=None)
    # the verdict keeps yes / no and says when another zoo could turn it
    figures = dict(identity_top1=1.0, signal_to_noise=3.02, intervals=dict(identity_top1=[0.97, 1.0],
                                                                           signal_to_noise=[2.7, 3.4]))
    report = dict(archs=["vgg16"], seeds=3, replicates=2, metrics=dict(frechet=figures))
    answer, why = verdict(report, "frechet")
    assert answer == "yes" and "not settled" in why and "signal_to_noise 2.70-3.40" in why
    assert "identity_top1" not in why.split("not settled")[1]  # its interval stays above its goal
    figures["intervals"]["signal_to_noise"] = [GOALS["signal_to_noise"], 3.4]
    assert verdict(report, "frechet") == ("yes", "identity 1.000, signal/noise 3.02 (vgg16, 3 seed(s), 2 "
                                                 "retrained twin(s))")


@pytest.mark.unit
def test_a_task_refines_another_when_its_labels_determine_the_others():
    zero, low_high, ten = TASKS
    assert refines(ten, zero) and refines(ten, low_high) and refines(zero, zero)
    assert not refines(zero, ten) and not refines(low_high, zero) and not refines(zero, low_high)
    mnist = {task.name: task for task in resolve_suite("mnist4").tasks}
    assert refines(mnist["mnist-0123-else"], mnist["mnist-digit0"])
    assert not refines(mnist["mnist-0123-else"], mnist["mnist-digit6"])  # 6 shares "anything else" with 7
    only_some = make_task("digits-0-vs-1", "digits", [["0"], ["1"]])
    assert not refines(only_some, zero)  # digit 0 also labels 2..9, which this task never sees
    other_dataset = make_task("mnist-10", "mnist", [[str(d)] for d in range(10)])
    assert not refines(other_dataset, zero)


@pytest.mark.unit
def test_the_identity_test_column_by_column_and_without_refining_baselines():
    # column a: baseline c is closer than a's twin, and c refines a; column b: the twin wins; column c: b beats it
    matrices = np.array([[[0, 0.5, 0.6], [0.5, 0, 0.3], [0.2, 0.5, 0]]] * 2, float)
    replicates = np.array([[[0.3], [0.4], [0.35]]] * 2, float)
    result = _result(matrices, replicates)

    def refining(baseline, target):
        return (baseline, target) == ("c", "a")

    assert identity_top1([result]) == pytest.approx(2 / 6)
    assert identity_top1([result], refining) == pytest.approx(4 / 6)
    columns = identity_columns([result], refining)
    assert {t: (c["hits"], c["cases"]) for t, c in columns.items()} == dict(a=(0, 2), b=(2, 2), c=(0, 2))
    assert columns["a"]["beaten_by"] == dict(c=2) and columns["a"]["refined_by"] == ["c"]
    assert columns["c"]["beaten_by"] == dict(b=2) and columns["c"]["refined_by"] == []
    assert columns["b"]["low"] < 1 == columns["b"]["high"] and columns["a"]["low"] == 0 < columns["a"]["high"]


@pytest.mark.unit
@pytest.mark.parametrize("hits, cases", [(0, 5), (17, 18), (9, 18), (18, 18), (1, 2)])
def test_wilsons_interval_solves_its_defining_equation(hits, cases):
    share, low, high = proportion_interval(hits, cases)
    z = 1.959963984540054
    assert share == hits / cases and 0 <= low <= share <= high <= 1
    # the bounds are the p at which the observed share sits exactly z standard errors away (or 0 / 1 at the edges)
    for bound in (low, high):
        if 0 < bound < 1:
            assert abs(share - bound) == pytest.approx(z * np.sqrt(bound * (1 - bound) / cases), rel=1e-9)
    assert (low == 0) == (hits == 0) and (high == 1) == (hits == cases)


@pytest.mark.unit
def test_dataset_auc_and_closest_stability_on_a_constructed_case():
    # a, b from one dataset, c from another: a and b are each other's closest, c is far from both
    matrices = np.array([[[0, 0.1, 0.9], [0.1, 0, 0.8], [0.9, 0.8, 0]]] * 3, float)
    result = _result(matrices, np.zeros((3, 3, 1)))
    assert same_dataset_auc([result], dict(a="x", b="x", c="y")) == 1.0
    assert same_dataset_auc([result], dict(a="x", b="x", c="x")) is None
    assert closest_stability([result]) == 1.0
    flipped = matrices.copy()
    flipped[1, 1, 0], flipped[1, 2, 0] = 0.95, 0.05  # one seed's column a prefers c, by far
    # left out, seed 1 disagrees with the mean of seeds 0 and 2; and seed 1 drags the mean of the others (1, 2 for
    # seed 0; 0, 1 for seed 2) to c, so column a agrees nowhere: 6 of 9 (an average including itself said 8 of 9)
    assert closest_stability([_result(flipped, np.zeros((3, 3, 1)))]) == pytest.approx(6 / 9)
    assert closest_stability([_result(matrices[:1], np.zeros((1, 3, 1)))]) is None  # one matrix: nothing to agree with


@pytest.mark.unit
def test_closest_stability_leaves_each_matrix_out_of_the_mean_it_is_compared_with():
    rng = np.random.default_rng(5)
    matrices = rng.random((5, 4, 4)) * (1 - np.eye(4))
    agree = 0
    for k in range(5):  # brute force: the closest baseline of each column, alone and in the mean of the others
        others = np.delete(matrices, k, axis=0).mean(axis=0)
        for t in range(4):
            baselines = [b for b in range(4) if b != t]
            agree += min(baselines, key=lambda b: matrices[k, b, t]) == min(baselines, key=lambda b: others[b, t])
    assert closest_stability([_result(matrices, np.zeros((5, 4, 1)), tasks="abcd")]) == pytest.approx(agree / 20)


def test_the_report_runs_end_to_end_and_every_figure_is_in_range(digits_workspace, tiny_preset):
    request = ValidateRequest(suite="custom", archs=("vgg16",), seeds=2, preset="tiny", replicates=1,
                              metrics=("logdet", "logdet-scaled", "frechet", "frechet-sorted"),
                              fisher=FisherConfig(samples=24, head_samples=48))
    report = validate_distances(request, quiet_context(digits_workspace, "cpu"))
    # both views (TA-NAS first), every metric under both references (the view's own first): matched references
    rows = [*(name for m in request.metrics for name in (m, f"{m}@redraw")),
            *(name for m in request.metrics for name in (f"probe:{m}", f"probe:{m}@retrained"))]
    assert list(report["metrics"]) == rows and report["default_metric"] in rows
    assert [report["metrics"][name]["reference"] for name in rows[:2] + rows[-2:]] == ["retrained", "redraw",
                                                                                      "redraw", "retrained"]
    for name, figures in report["metrics"].items():
        assert "rank_agreement" in figures and figures["rank_agreement"] is None  # 2 baselines a column: no ranking
        assert 0 <= figures["identity_top1"] <= 1 and figures["signal_to_noise"] > 0
        assert 0 <= figures["closest_stability"] <= 1 and figures["seconds"] >= 0
        assert figures["same_dataset_auc"] is None  # one dataset
        assert (figures["logdet_lift"] is not None) == name.split(":")[-1].startswith("logdet")
        identity = report["columns"][name]
        assert sum(c["cases"] for c in identity.values()) == len(TASKS) * 2 * 1  # targets x seeds x replicates
        assert sum(c["hits"] for c in identity.values()) / 6 == pytest.approx(figures["identity_top1"])
        assert figures["identity_top1_unrefined"] >= figures["identity_top1"]  # fewer rivals, never fewer wins
        for key, (low, high) in figures["intervals"].items():  # over the 2 seeds, drawn with replacement
            assert low <= figures[key] <= high
    # the networks, their replicates and the Fishers are computed once for every metric; retrained probe networks
    # (same initial weights, other data) are the probe view's retrained twins
    assert len(digits_workspace.list_networks()) == 3 * 2 * 2
    probes = [payload for payload in digits_workspace.list_results("probe_network")]
    assert sorted((p["seed"], p["replicate"]) for p in probes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    networks = digits_workspace.list_networks()  # the report says which of them are epsilon-approximations
    assert report["epsilon"]["networks"] == 12 and report["epsilon"]["by_dataset"]["digits"]["networks"] == 12
    assert report["epsilon"]["met"] == sum(r.test_accuracy >= 1 - r.epsilon for r in networks)


def test_redraw_and_retrained_twins_differ_in_what_they_should(digits_workspace, tiny_preset, tmp_path):
    """Under either reference the matrices d[b, t] are the same; only the twins differ: a redraw is the target's own
    network on another draw of its data, a retrained twin another network of the same initial weights (in the probe
    view a retrained probe network) on the target's probe images. The second reference reuses the first's matrices
    (and bootstrap): the same as computing them afresh, in a workspace that holds nothing."""
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.distances.views import get_view, twin
    from tanas_core.workspace.store import Workspace

    context = quiet_context(digits_workspace, "cpu")
    settings = dict(suite="custom", archs=("vgg16",), seeds=1, preset="tiny", replicates=1, bootstrap=4,
                    fisher=FisherConfig(samples=24, head_samples=48))
    suite = resolve_suite("custom", digits_workspace)
    for view in ("tanas", "probe"):
        redraw, retrained = (DistanceRequest(view=view, reference=kind, **settings) for kind in ("redraw", "retrained"))
        assert DistanceRequest(view=view, **settings).twin_kind == get_view(view).own_reference
        first, second = (distance_matrices(r, context)[0] for r in (redraw, retrained))
        fresh_workspace = Workspace(tmp_path / f"fresh-{view}")
        for task in TASKS:
            fresh_workspace.save_task(task)
        fresh = distance_matrices(retrained, quiet_context(fresh_workspace, "cpu"))[0]
        for result in (first, second):
            np.testing.assert_allclose(result.matrices, fresh.matrices, rtol=1e-6)
            np.testing.assert_allclose(result.bootstrap, fresh.bootstrap, rtol=1e-6)
        np.testing.assert_allclose(second.replicates, fresh.replicates, rtol=1e-6)
        assert not np.allclose(first.replicates, second.replicates)
        networks = {**get_view(view).networks(redraw, suite, context), **get_view(view).networks(retrained, suite,
                                                                                                  context)}
        task = suite.tasks[0]
        own = networks[(task.name, 0, 0)]
        same_network, _, draw = twin(redraw, networks, task, 0, 1)
        other_network, _ = twin(retrained, networks, task, 0, 1)
        assert same_network.key == own.key and draw == 1
        assert other_network.key != own.key and (other_network.seed, other_network.replicate) == (0, 1)


def test_the_distances_page_says_yes_no_or_not_measured_from_the_report(real_data):
    from streamlit.testing.v1 import AppTest

    from conftest import REPO
    from tanas_core.workspace.store import Workspace
    from test_pages import by_label, plotly_specs

    tables, successes, charts = [], [], []

    def page_text() -> str:
        app = AppTest.from_file(str(REPO / "app_pages/3_Distances.py"), default_timeout=120).run()
        by_label(app.selectbox, "Suite").set_value("mnist4")
        by_label(app.selectbox, "View").set_value("tanas")
        by_label(app.selectbox, "Metric").set_value("frechet")
        app.run()
        assert not app.exception
        tables.extend(frame.value for frame in app.dataframe)
        successes.extend(e.value for e in app.success)
        charts.extend(plotly_specs(app))
        return " ".join(e.value for e in [*app.info, *app.warning, *app.success])

    assert "Separates these tasks from noise (frechet): not measured" in page_text()
    figures = dict(identity_top1=0.68, signal_to_noise=1.19, same_dataset_auc=None, closest_stability=0.86,
                   logdet_lift=None, seconds=1.0)
    report = dict(suite="mnist4", preset="demo", archs=["vgg16"], seeds=3, replicates=2, default_metric="frechet",
                  fisher=FisherConfig().to_dict(),
                  metrics=dict(frechet=dict(figures, identity_top1_unrefined=0.92)), created_at=0.0,
                  columns=dict(frechet={"mnist-digit0": dict(
                      hits=9, cases=18, share=0.5, low=0.29, high=0.71, beaten_by={"mnist-10class": 8},
                      refined_by=["mnist-10class"])}),
                  transfer=dict(kind="finetune", epochs=1.0, tasks=["a", "b"],
                                gains=dict(vgg16=[[0.0, 0.25], [-0.125, 0.0]])))
    Workspace().put_result("validation", "constructed", report)
    text = page_text()
    # what close buys: the report's transfer gains beside its figures
    gains = [c for c in charts if "transfer gain" in json.dumps(c.get("layout", {}).get("title", ""))]
    assert gains and gains[0]["data"][0]["z"] == [[0.0, 0.25], [-0.125, 0.0]], charts
    assert "Separates these tasks from noise (frechet): no" in text and "identity_top1 0.680 < 0.95" in text
    # the failing metric is listed with its verdict, not hidden
    listed = [t for t in tables if "verdict" in t.columns]
    assert listed and listed[0].set_index("row").loc["frechet", "verdict"] == "no"
    # and column by column: what the twin loses to, a refining baseline marked
    by_column = [t for t in tables if "twin ranks first" in t.columns]
    assert by_column and by_column[-1].iloc[0]["beaten by (cases)"] == "mnist-10class ★ (8)"
    # a newer report computed with other Fisher settings is not this page's verdict (it is that setting's)
    from tanas_core.distances.validation import latest_validation

    other = dict(report, fisher=FisherConfig(head_weight_decay=0.01).to_dict(),
                 metrics=dict(frechet=dict(figures, identity_top1=0.99, signal_to_noise=5.0)))
    Workspace().put_result("validation", "constructed-other-penalty", other)
    assert "identity_top1 0.680 < 0.95" in page_text()
    assert latest_validation(Workspace(), "mnist4", "demo", FisherConfig(head_weight_decay=0.01)) == other
    assert latest_validation(Workspace(), "mnist4", "demo") == other  # without settings: the newest
    # a report from before reports recorded their settings ran at that time's defaults (M 512, 512 head images, 1e-4)
    unrecorded = {name: value for name, value in report.items() if name != "fisher"}
    Workspace().put_result("validation", "constructed-unrecorded", unrecorded)
    assert latest_validation(Workspace(), "mnist4", "demo", FisherConfig()) == report
    assert latest_validation(Workspace(), "mnist4", "demo",
                             FisherConfig(samples=512, head_samples=512, head_weight_decay=1e-4)) == unrecorded
    assert latest_validation(Workspace(), "mnist4", "demo",
                             FisherConfig(head_samples=512, head_weight_decay=1e-4)) is None  # M 800 never unrecorded
    # a newer report of the other view only (`--views probe`) does not hide this row's verdict
    probe_only = dict(report, metrics={"probe:frechet": figures}, columns={})
    Workspace().put_result("validation", "constructed-probe-only", probe_only)
    assert latest_validation(Workspace(), "mnist4", "demo", FisherConfig()) == probe_only
    assert latest_validation(Workspace(), "mnist4", "demo", FisherConfig(), "frechet") == report
    assert "identity_top1 0.680 < 0.95" in page_text()
    # a "yes" that resampling the seeds could turn is said so, and not shown as a plain success
    close = dict(figures, identity_top1=1.0, signal_to_noise=3.02,
                 intervals=dict(identity_top1=[0.97, 1.0], signal_to_noise=[2.8, 3.2]))
    Workspace().put_result("validation", "constructed-close", dict(report, metrics=dict(frechet=close)))
    successes.clear()
    text = page_text()
    assert "Separates these tasks from noise (frechet): yes, not settled" in text and "2.80-3.20" in text
    assert not [s for s in successes if "Separates" in s]
    settled = dict(close, intervals=dict(identity_top1=[0.97, 1.0], signal_to_noise=[3.1, 3.5]))
    Workspace().put_result("validation", "constructed-settled", dict(report, metrics=dict(frechet=settled)))
    successes.clear()
    assert "not settled" not in page_text()
    assert [s for s in successes if "Separates these tasks from noise (frechet): yes** —" in s]


def test_bootstrap_intervals_cover_the_full_sample_distance_and_rank_frequencies_add_up(digits_workspace,
                                                                                      tiny_preset):
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.requests import DistanceRequest

    request = DistanceRequest(suite="custom", archs=("vgg16",), seeds=2, metric="frechet", preset="tiny",
                              replicates=0, bootstrap=60, fisher=FisherConfig(samples=28, head_samples=48, chunks=7))
    [result] = distance_matrices(request, quiet_context(digits_workspace, "cpu"))
    assert result.bootstrap.shape == (2, 60, 3, 3)
    covered = []
    for k in range(2):
        for b in range(3):
            for t in range(3):
                if b != t:
                    samples = result.bootstrap[k, :, b, t]
                    low, high = np.percentile(samples, [2.5, 97.5])
                    covered.append(low <= result.matrices[k, b, t] <= high)
    assert np.mean(covered) >= 0.9, covered  # the full-sample value lies inside its own bootstrap interval
    for target in result.tasks:
        frequency = result.rank_frequency(target)
        assert sum(frequency.values()) == pytest.approx(1.0) and set(frequency) == set(result.tasks) - {target}
        closest = result.closest(target, 1)[0]["baseline"]
        assert closest not in result.not_separable(target)
        for baseline in set(result.tasks) - {target}:  # each estimate (mean over seeds) lies inside its interval
            low, high = result.interval(baseline, target)
            assert low <= result.mean[result.tasks.index(baseline), result.tasks.index(target)] <= high


@pytest.mark.unit
def test_the_refitted_head_follows_its_features_smoothly():
    """Features that differ by float32 rounding (what another memory layout gives) must give one head: fitted in
    float32, L-BFGS stopped on an unchanged loss up to 1.5e-4 short of the optimum on these draws; in float64 it ends
    on its gradient tolerance."""
    from tanas_core.fisher.target import refit_head

    torch.manual_seed(1)
    model = build_network("vgg16", 2, 3, 0.0625).eval()
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (2000,), generator=generator)
        means = torch.randn(2, 32, generator=generator) * 0.5
        features = (means[labels] + torch.randn(2000, 32, generator=generator)).relu()
        rounded = features * (1 + 1e-7 * torch.randn(features.shape, generator=generator))
        heads = [refit_head(model, f, labels, 2, 0.3).head for f in (features, rounded)]
        assert all(head.weight.dtype == torch.float32 for head in heads)
        first, second = (torch.cat([head.weight.flatten(), head.bias]).detach() for head in heads)
        assert (first - second).abs().max() <= 1e-6 * first.abs().max(), seed


def test_the_fisher_kernels_change_the_layout_not_the_fisher(digits_workspace, tiny_preset):
    """``target_fisher.Kernels`` (feature batch, channels-last Fisher pass) is left out of the store keys, so the
    previous and the current kernels must give one Fisher up to float32 rounding, on every architecture."""
    from tanas_core.fisher.target import KERNELS, Kernels, compute_target_fisher
    from tanas_core.requests import ZooRequest
    # the layouts before channels-last, and before channels-last head features
    PREVIOUS_KERNELS = Kernels(feature_batch=256, channels_last=False, features_channels_last=False)
    CONTIGUOUS_FEATURES = Kernels(features_channels_last=False)
    from tanas_core.training.checkpoints import verify_checkpoint
    from tanas_core.training.zoo import train_zoo

    suite = resolve_suite("custom", digits_workspace)
    records = train_zoo(ZooRequest(suite="custom", archs=("vgg16", "resnet18", "densenet121"), preset="tiny",
                                   tasks=("digits-zero",)), quiet_context(digits_workspace, "cpu"))
    config, target = FisherConfig(samples=40, head_samples=100, chunks=4), TASKS[1]
    assert KERNELS != PREVIOUS_KERNELS
    for record in records:
        state = verify_checkpoint(digits_workspace, record)
        fishers = [compute_target_fisher(state, record, suite, target, tiny_preset, "diagonal", config, "cpu",
                                         kernels=kernels)[0].double()
                   for kernels in (PREVIOUS_KERNELS, KERNELS, CONTIGUOUS_FEATURES,
                                   Kernels(feature_batch=7, channels_last=False))]
        assert fishers[0].shape == (4, sum(p.numel() for _, p in select_parameters(
            build_network(record.arch, 2, record.in_channels, record.width))))
        for other in fishers[1:]:
            assert (other - fishers[0]).abs().max() <= 1e-4 * fishers[0].abs().max(), record.arch


# ---------------------------------------------------------------------------------------------- the common probe

def test_the_probe_view_embeds_every_task_with_one_network_per_seed_and_is_symmetric_for_frechet(digits_workspace,
                                                                                                 tiny_preset):
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.requests import DistanceRequest
    from tanas_core.training.probe_network import broad_data

    request = DistanceRequest(suite="custom", archs=("vgg16",), seeds=2, metric="frechet-sorted", preset="tiny",
                              replicates=1, bootstrap=8, view="probe", fisher=FisherConfig(samples=24, head_samples=48))
    [result] = distance_matrices(request, quiet_context(digits_workspace, "cpu"))
    assert result.view == "probe" and result.matrices.shape == (2, 3, 3) and result.replicates.shape == (2, 3, 1)
    # one probe network per seed, none per task; d[b, t] compares one network on X_b and X_t
    assert digits_workspace.list_networks() == [] and len(digits_workspace.list_results("probe_network")) == 2
    # the reference compares data draws under that same network: per seed, T Fishers on draw 0 and T on draw 1
    fishers = digits_workspace.list_results("fisher")
    probes = {payload["network"] for payload in fishers}
    assert len(probes) == 2 and sorted(payload.get("draw") for payload in fishers) == [0] * 6 + [1] * 6
    assert np.allclose(result.matrices, result.matrices.transpose(0, 2, 1))
    assert (result.matrices[:, ~np.eye(3, dtype=bool)] > 0).all() and (result.replicates > 0).all()
    # the broad task: every digit class, probe images excluded from its training data
    images, labels = broad_data(resolve_suite("custom", digits_workspace), tiny_preset, 0)["train"]
    assert set(labels.tolist()) == set(range(10)) and images.shape[1:] == (1, 32, 32)
    again = distance_matrices(request, quiet_context(digits_workspace, "cpu"))[0]
    assert again.cached and np.array_equal(again.matrices, result.matrices)


@pytest.mark.unit
def test_rank_agreement_is_one_for_the_same_order_and_minus_one_for_the_reverse():
    from tanas_core.distances.validation import rank_agreement

    tasks = ("a", "b", "c", "d")
    matrix = np.array([[0, 1, 2, 3], [1, 0, 5, 4], [2, 6, 0, 7], [3, 7, 9, 0]], float)[None]
    reverse = matrix.copy()
    for t in range(4):
        rows = [r for r in range(4) if r != t]
        reverse[0, rows, t] = matrix[0, rows[::-1], t]
    base = _result(matrix, np.zeros((1, 4, 0)), tasks=tasks)
    assert rank_agreement([base], [_result(matrix * 3 + 1, np.zeros((1, 4, 0)), tasks=tasks)]) == pytest.approx(1)
    assert rank_agreement([base], [_result(reverse, np.zeros((1, 4, 0)), tasks=tasks)]) == pytest.approx(-1)


@pytest.mark.unit
def test_the_probe_view_needs_backbone_fishers():
    from tanas_core.requests import DistanceRequest

    with pytest.raises(ValueError, match="common-probe view .* needs Fisher params 'backbone'"):
        DistanceRequest(suite="mnist4", view="probe", fisher=FisherConfig(params="all")).validate()


def test_a_result_stored_before_a_setting_existed_differs_only_in_what_really_differs(digits_workspace, tiny_preset):
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.distances.stored import nearest_stored, request_key
    from tanas_core.requests import DistanceRequest

    # run at the penalty every Fisher had before it was a setting, as an old record was
    request = DistanceRequest(suite="custom", archs=("vgg16",), preset="tiny", replicates=1, bootstrap=0,
                              fisher=FisherConfig(samples=24, head_samples=48, head_weight_decay=1e-4))
    distance_matrices(request, quiet_context(digits_workspace, "cpu"))
    [payload] = digits_workspace.list_results("distances")
    del payload["request"]["fisher"]["head_weight_decay"]  # as a version before the setting stored it, in its place
    key = request_key(request, resolve_suite("custom", digits_workspace), "vgg16")
    digits_workspace.put_result("distances", key, payload)
    assert digits_workspace.list_results("distances") == [payload]
    _, differences = nearest_stored(digits_workspace, request.replace(seeds=2), "vgg16")
    assert differences == ["seeds 1 (asked: 2)"]
    _, differences = nearest_stored(digits_workspace, request.replace(
        fisher=FisherConfig(samples=24, head_samples=48, head_weight_decay=1e-2)), "vgg16")
    assert differences == ["fisher.head_weight_decay 0.0001 (asked: 0.01)"]


@pytest.mark.unit
def test_the_reports_progress_scale_gives_each_row_the_fishers_it_is_first_to_compute(tmp_path):
    """Equal phases gave the first of 20 rows 5 % of the scale while it computed most of the report's Fishers (the
    CLI showed 5 % after 30 min of a 60 min report and promised 10 hours)."""
    from tanas_core.workspace.context import RunContext
    from tanas_core.workspace.store import Workspace

    request = ValidateRequest(suite="ld8", archs=("vgg16", "resnet18"), seeds=5, replicates=2,
                              metrics=("logdet", "frechet"), views=("tanas", "probe"))
    costs = dict(zip((row_name(*row) for row in request.rows()), request.row_costs(8)))
    seeds, tasks, twins = 5, 8, 2
    # TA-NAS: the first row computes each network's Fisher on every task and its retrained twins'; the redraw row
    # adds its redraw twins; the other metric reads them all (its distances only)
    assert costs["logdet"] == seeds * tasks * tasks + seeds * tasks * twins + seeds
    assert costs["logdet@redraw"] == seeds * tasks * twins + seeds
    assert costs["frechet"] == costs["frechet@redraw"] == seeds
    # probe: one Fisher per task and seed under the probe network, its redraws; then the retrained probes' Fishers
    assert costs["probe:logdet"] == seeds * tasks * (1 + twins) + seeds
    assert costs["probe:logdet@retrained"] == seeds * tasks * twins + seeds
    assert costs["probe:frechet"] == costs["probe:frechet@retrained"] == seeds
    assert request.fishers_needed(8) == 2 * (sum(costs.values()) - seeds * len(costs))

    seen = []
    context = RunContext(Workspace(tmp_path), on_progress=lambda message, fraction: seen.append(fraction))
    first, second = context.step_phases(["first", "second"], [3, 1])
    first.progress("half", 0.5)
    second.progress("started", 0.0)
    assert seen == [0.375, 0.75]
    seen.clear()  # every weight 0 (nothing expected to cost anything): equal phases, not zero-wide ones
    _, late = RunContext(Workspace(tmp_path), on_progress=lambda message, f: seen.append(f)).step_phases(
        ["a", "b"], [0, 0])
    late.progress("half", 0.5)
    assert seen == [0.75]
    with pytest.raises(ValueError, match="one non-negative weight per label"):
        context.step_phases(["a", "b"], [1])
