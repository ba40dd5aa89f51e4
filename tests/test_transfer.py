"""Transfer as the ground truth of a task distance: accuracies, gains against a network that learned nothing, and the
figures that say whether closer tasks transfer better."""
from __future__ import annotations

import numpy as np
import pytest

from tanas_core.data.tasks import make_task
from tanas_core.distances.report_table import split_half_text
from tanas_core.distances.transfer import transfer_figures, transfer_split_half
from tanas_core.distances.validation import validate_distances
from tanas_core.intervals import spearman
from tanas_core.requests import FisherConfig, ValidateRequest
from tanas_core.workspace.context import quiet_context
from tanas_core.workspace.records import DistanceResult


def _result(matrices, arch="vgg16", tasks=("a", "b", "c", "d")) -> DistanceResult:
    matrices = np.asarray(matrices, float)
    return DistanceResult(suite="s", arch=arch, metric="frechet", sigma=0.0, seeds=list(range(len(matrices))),
                          tasks=list(tasks), matrices=matrices, noise_floor=np.full(len(tasks), np.nan),
                          seconds=0.0, replicates=np.zeros((len(matrices), len(tasks), 1)),
                          lift=np.full((len(matrices), len(tasks)), np.nan),
                          bootstrap=np.zeros((len(matrices), 0, len(tasks), len(tasks))))


def _average_ranks(values) -> np.ndarray:
    """Brute force: each value's rank is the number of smaller values plus half the other equal ones."""
    return np.array([sum(v < value for v in values) + (sum(v == value for v in values) - 1) / 2 for value in values])


def _brute_spearman(x, y) -> float:
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))


@pytest.mark.unit
def test_spearman_equals_a_brute_force_rank_correlation_with_and_without_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=7).astype(float), rng.random(7)
        if len(set(x)) == 1:
            assert np.isnan(spearman(x, y))
        else:
            assert spearman(x, y) == pytest.approx(_brute_spearman(x, y), abs=1e-12)
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))  # a constant has no ranking


@pytest.mark.unit
def test_a_distance_that_orders_sources_by_their_gain_scores_minus_one_and_always_picks_the_best_source():
    rng = np.random.default_rng(1)
    gains = rng.random((2, 4, 4))
    distances = 1.0 - gains  # closer exactly where the gain is larger
    perfect = transfer_figures([_result(distances)], {"vgg16": gains})
    assert perfect == dict(transfer_rank_correlation=pytest.approx(-1.0), closest_is_best_source=1.0,
                           intervals=dict(transfer_rank_correlation=[pytest.approx(-1.0)] * 2,
                                          closest_is_best_source=[1.0, 1.0]))
    reversed_ = transfer_figures([_result(gains)], {"vgg16": gains})  # closer where the gain is smaller
    assert reversed_["transfer_rank_correlation"] == pytest.approx(1.0) and reversed_["closest_is_best_source"] == 0
    # brute force on unrelated matrices: per target, Spearman over the other baselines of the seeds' means
    other = rng.random((2, 4, 4))
    expected = np.mean([_brute_spearman(other.mean(0)[[b for b in range(4) if b != t], t],
                                        gains.mean(0)[[b for b in range(4) if b != t], t]) for t in range(4)])
    assert transfer_figures([_result(other)], {"vgg16": gains})["transfer_rank_correlation"] == \
        pytest.approx(expected)


@pytest.mark.unit
def test_transfer_figures_within_a_dataset_use_only_its_baselines_and_their_range_resamples_seeds_together():
    tasks, datasets = ("m1", "m2", "m3", "m4", "c1", "c2"), dict(m1="mnist", m2="mnist", m3="mnist", m4="mnist",
                                                                  c1="cifar10", c2="cifar10")
    rng = np.random.default_rng(2)
    distances, gains = rng.random((4, 6, 6)), rng.random((4, 6, 6))
    figures = transfer_figures([_result(distances, tasks=tasks)], {"vgg16": gains}, datasets)

    def brute(d, g):  # per target, the baselines of its own dataset only
        correlations, best = [], []
        for t, target in enumerate(tasks):
            others = [b for b in range(6) if b != t and datasets[tasks[b]] == datasets[target]]
            if len(others) > 1:
                correlations.append(_brute_spearman(d[others, t], g[others, t]))
            best.append(others[int(np.argmin(d[others, t]))] == others[int(np.argmax(g[others, t]))])
        return np.mean(correlations), np.mean(best)

    expected = brute(distances.mean(0), gains.mean(0))
    assert figures["transfer_rank_correlation_within"] == pytest.approx(expected[0])
    assert figures["closest_is_best_source_within"] == pytest.approx(expected[1])
    # the range: the same figure over seeds drawn with replacement, matrices and gains moving together
    draws = []
    for _ in range(200):
        chosen = rng.integers(4, size=4)
        draws.append(brute(distances[chosen].mean(0), gains[chosen].mean(0))[0])
    low, high = figures["intervals"]["transfer_rank_correlation_within"]
    assert low <= figures["transfer_rank_correlation_within"] <= high
    assert low == pytest.approx(np.percentile(draws, 2.5), abs=0.15)
    assert high == pytest.approx(np.percentile(draws, 97.5), abs=0.15)
    # one dataset: no within figures; one seed: no range
    single = transfer_figures([_result(distances[:1], tasks=tasks)], {"vgg16": gains[:1]})
    assert "transfer_rank_correlation_within" not in single
    assert single["intervals"] == dict(transfer_rank_correlation=None, closest_is_best_source=None)


@pytest.mark.unit
def test_the_split_half_reference_scores_one_half_of_the_seeds_transfer_ranking_against_the_other():
    tasks, datasets = ("m1", "m2", "m3", "c1", "c2", "c3"), dict(m1="mnist", m2="mnist", m3="mnist", c1="cifar10",
                                                                  c2="cifar10", c3="cifar10")
    rng = np.random.default_rng(3)
    steady = np.repeat(rng.random((1, 6, 6)), 4, axis=0)  # every seed ranks the sources alike
    assert transfer_split_half({"vgg16": steady}, list(tasks)) == dict(
        transfer_rank_correlation=pytest.approx(-1.0), closest_is_best_source=1.0)

    def brute(gains, restrict):  # every split of the seeds into 2 and the rest, every target column
        correlations, best = [], []
        for half in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4)]:
            rest = [k for k in range(5) if k not in half]
            first, second = gains[list(half)].mean(0), gains[rest].mean(0)
            for t, target in enumerate(tasks):
                others = [b for b in range(6) if b != t and (not restrict or datasets[tasks[b]] == datasets[target])]
                correlations.append(_brute_spearman(-first[others, t], second[others, t]))
                best.append(others[int(np.argmax(first[others, t]))] == others[int(np.argmax(second[others, t]))])
        return np.mean(correlations), np.mean(best)

    noisy = rng.random((5, 6, 6))
    split = transfer_split_half({"vgg16": noisy, "resnet18": noisy}, list(tasks), datasets)
    assert split["transfer_rank_correlation"] == pytest.approx(brute(noisy, False)[0])
    assert split["closest_is_best_source"] == pytest.approx(brute(noisy, False)[1])
    assert split["transfer_rank_correlation_within"] == pytest.approx(brute(noisy, True)[0])
    assert split["closest_is_best_source_within"] == pytest.approx(brute(noisy, True)[1])
    # independent seeds agree with themselves only by chance
    assert abs(split["transfer_rank_correlation"]) < 0.3
    assert transfer_split_half({"vgg16": noisy[:1]}, list(tasks)) is None  # one seed: nothing to split
    # as the tables and the Distances page say it
    text = split_half_text(split)
    assert f"reaches {split['transfer_rank_correlation']:.3f} / {split['closest_is_best_source']:.3f}" in text
    assert f"within a dataset {split['transfer_rank_correlation_within']:.3f}" in text
    assert split_half_text(None) == ""


def test_a_report_with_transfer_says_how_well_each_rows_distances_predict_it(workspace, tiny_preset):
    for task in (make_task("digits-zero", "digits", [["0"]], other=True),
                 make_task("digits-low-high", "digits", [["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]]),
                 make_task("digits-10class", "digits", [[str(d)] for d in range(10)])):
        workspace.save_task(task)
    request = ValidateRequest(suite="custom", archs=("vgg16",), seeds=2, preset="tiny", replicates=1,
                              metrics=("frechet",), views=("tanas", "probe"), bootstrap=0, transfer="finetune",
                              transfer_epochs=0.5, transfer_images=64,
                              fisher=FisherConfig(samples=24, head_samples=48))
    report = validate_distances(request, quiet_context(workspace, "cpu"))
    gains = np.asarray(report["transfer"]["gains"]["vgg16"])
    assert report["transfer"]["kind"] == "finetune" and gains.shape == (3, 3)
    split = report["transfer"]["split_half"]  # 2 seeds: one against the other (tied gains have no ranking: None)
    assert split["transfer_rank_correlation"] is None or -1 <= split["transfer_rank_correlation"] <= 1
    assert split["closest_is_best_source"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert np.all(np.abs(gains) <= 1)  # accuracy differences
    for name in ("frechet", "probe:frechet"):
        figures = report["metrics"][name]
        assert figures["transfer_rank_correlation"] is None or -1 <= figures["transfer_rank_correlation"] <= 1
        assert figures["closest_is_best_source"] in (0.0, 1 / 3, 2 / 3, 1.0)
    # every accuracy is stored: the report again reads them (3 targets x 2 seeds x (3 sources + scratch))
    assert len(workspace.list_results("transfer")) == 3 * 2 * 4
    # linear probing then fine-tuning on the first 64 training images, recorded with each accuracy
    assert {(r["protocol"], r["images"]) for r in workspace.list_results("transfer")} == {("lp-ft", 64)}
    assert report["transfer"]["images"] == 64
    again = validate_distances(request, quiet_context(workspace, "cpu"))
    assert again["transfer"]["gains"] == report["transfer"]["gains"]
