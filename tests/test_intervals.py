"""Repeated comparisons (issue 14): t-intervals, paired differences, and a comparison table whose methods are
identical reports ties."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tanas_core.intervals import mean_interval, paired_difference
from tanas_core.workspace.records import Comparison, ComparisonRow

pytestmark = pytest.mark.unit


def test_the_t_interval_covers_the_true_mean_95_percent_of_the_time_with_three_repeats():
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(4000):
        _, low, high = mean_interval(rng.normal(0.8, 0.05, size=3))
        covered.append(low <= 0.8 <= high)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)


def test_single_values_have_no_interval_and_missing_values_are_skipped():
    assert mean_interval([0.7])[0] == 0.7 and math.isnan(mean_interval([0.7])[1])
    assert all(math.isnan(v) for v in mean_interval([]))
    assert mean_interval([None, 0.5, 0.7])[0] == pytest.approx(0.6)


def test_an_interval_is_cut_to_the_range_its_quantity_cannot_leave_and_still_covers_the_mean():
    times = [0.5, 9.0, 1.0]  # seconds: the uncut t interval reaches far below 0
    mean, low, high = mean_interval(times)
    assert low < 0
    assert mean_interval(times, bounds=(0.0, math.inf)) == (mean, 0.0, high)
    rng = np.random.default_rng(1)  # near a bound: the cut interval covers a mean inside it exactly when the uncut does
    for _ in range(500):
        accuracies = np.clip(rng.normal(0.98, 0.03, size=3), 0, 1)
        (_, low, high), (_, cut_low, cut_high) = mean_interval(accuracies), mean_interval(accuracies,
                                                                                           bounds=(0.0, 1.0))
        assert (low <= 0.98 <= high) == (cut_low <= 0.98 <= cut_high) and 0.0 <= cut_low and cut_high <= 1.0


def test_a_comparisons_time_intervals_never_go_below_zero():
    rows = [_row("FUSE, related space", r, 0.9, search) for r, search in enumerate((1.0, 30.0, 2.0))]
    [summary] = Comparison("s", "t", rows, "", [], 1.0, "demo", {}).summary()
    assert summary["search_seconds_low"] == 0.0 and summary["search_seconds_high"] > 30


def test_a_paired_difference_is_a_tie_when_its_interval_reaches_zero():
    assert paired_difference([0.90, 0.92, 0.91], [0.80, 0.81, 0.79])["verdict"] == "higher"
    assert paired_difference([0.80, 0.81, 0.79], [0.90, 0.92, 0.91])["verdict"] == "lower"
    assert paired_difference([0.90, 0.80, 0.95], [0.85, 0.88, 0.90])["verdict"] == "tie"
    assert paired_difference([0.9], [0.8])["verdict"] == "not measured"


def _row(method: str, repeat: int, accuracy: float, search: float | None = 10.0) -> ComparisonRow:
    return ComparisonRow(method, "cell x" if method != "hand-designed" else "vgg16", accuracy, accuracy, 0.1,
                         search, 5.0, 1.0, "cpu", repeat=repeat)


def test_a_comparison_of_identical_methods_gives_overlapping_intervals_and_ties():
    accuracies = [0.91, 0.88, 0.93]  # the same seeds give the same winners: the methods are one method
    rows = [_row(method, r, a) for method in ("random search", "FUSE, standard space", "FUSE, related space")
            for r, a in enumerate(accuracies)]
    table = Comparison("s", "t", rows, "", [], 1.0, "demo", {})
    summary = {r["method"]: r for r in table.summary()}
    random, related = summary["random search"], summary["FUSE, related space"]
    assert random["repeats"] == 3 and random["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert random["test_accuracy_low"] < related["test_accuracy_high"]  # overlapping
    assert related["test_accuracy_low"] < random["test_accuracy_high"]
    assert {p["verdict"] for p in table.paired()} == {"tie"}  # every paired difference is 0
    # a real but noisy difference: still a tie with three seeds
    noisy = rows[:6] + [_row("FUSE, related space", r, a + d) for r, (a, d) in enumerate(zip(accuracies,
                                                                                            (0.02, -0.01, 0.03)))]
    paired = {p["method"]: p for p in Comparison("s", "t", noisy, "", [], 1.0, "demo", {}).paired()}
    assert paired["random search"]["verdict"] == "tie" and paired["random search"]["low"] < 0


def test_hand_designed_rows_are_summarised_per_architecture_without_a_search_time():
    rows = [_row("hand-designed", r, 0.9, search=None) for r in range(3)] + [_row("FUSE, related space", r, 0.8)
                                                                          for r in range(3)]
    summary = {r["method"]: r for r in Comparison("s", "t", rows, "", [], 1.0, "demo", {}).summary()}
    assert set(summary) == {"vgg16", "FUSE, related space"} and math.isnan(summary["vgg16"]["search_seconds"])


def test_the_comparison_chart_draws_each_methods_interval_as_an_error_bar():
    from tanas_core.app.figures import comparison_figure

    rows = [_row(m, r, a) for m, values in (("random search", (0.8, 0.9, 0.85)), ("FUSE, related space", (0.9,)))
            for r, a in enumerate(values)]
    summary = Comparison("s", "t", rows, "", [], 1.0, "demo", {}).summary()
    trace = comparison_figure(summary).data[0]
    assert list(trace.x) == ["random search", "FUSE, related space"]
    low, mean, high = summary[0]["test_accuracy_low"], summary[0]["test_accuracy"], summary[0]["test_accuracy_high"]
    assert trace.error_y.array[0] == pytest.approx(high - mean) and trace.error_y.arrayminus[0] == pytest.approx(
        mean - low)
    assert trace.error_y.array[1] == 0.0  # measured once: no interval


def test_the_seed_resampling_range_of_three_seeds_holds_its_figure_less_often_than_it_claims():
    """``bench coverage``, small: simulated zoos of a known model; with 3 seeds (10 distinct resamples) the nominal
    95 % range holds the population value of each verdict figure in fewer than 80 % of zoos, with 10 seeds in more
    than 85 % (60 zoos each: a binomial share of 0.9 lies in 0.79-0.96)."""
    from tanas_core.bench.coverage import coverage, simulation_truth

    truth = simulation_truth()
    three, ten = (coverage(truth, seeds, zoos=60, resamples=100, population_seeds=1000) for seeds in (3, 10))
    assert three["distinct_resamples"] == 10
    for name in ("identity_top1", "signal_to_noise"):
        assert three["coverage"][name] < 0.8 and ten["coverage"][name] > 0.85, (name, three, ten)
        assert ten["width"][name] < three["width"][name]


def test_the_controls_are_the_farthest_baseline_and_a_seeded_draw_outside_the_closest():
    from tanas_core.search.comparison import control_tasks

    ranking = [dict(baseline=name) for name in ("a", "b", "c", "d", "e")]  # closest first
    drawn = {control_tasks(ranking, 1, seed)["random"] for seed in range(40)}
    assert drawn == {"b", "c", "d", "e"} and control_tasks(ranking, 1, 0)["farthest"] == "e"
    assert control_tasks(ranking, 2, 3) == control_tasks(ranking, 2, 3)  # seeded: a repeat draws the same task
    assert control_tasks(ranking[:1], 1, 0) == dict(farthest="a", random="a")  # nothing outside the closest


def test_a_control_passes_over_baselines_whose_space_is_the_related_space():
    """A baseline that gives the related space itself is skipped: the farthest control is the next farthest, the
    random one the next in the seed's order; each baseline is asked at most once per control, lazily; where every
    one gives the related space, the controls fall back to the farthest and the first drawn (and are flagged)."""
    from tanas_core.search.comparison import control_tasks

    ranking = [dict(baseline=name) for name in ("a", "b", "c", "d", "e")]
    same, asked = {"e", "c"}, []

    def informative(name: str) -> bool:
        asked.append(name)
        return name not in same

    for seed in range(30):
        asked.clear()
        controls = control_tasks(ranking, 1, seed, informative)
        assert controls["farthest"] == "d" and controls["random"] in {"b", "d"}
        assert len(asked) <= 2 + 4 and asked[:2] == ["e", "d"]  # farthest first, stopping at the first that differs
    assert {control_tasks(ranking, 1, seed, informative)["random"] for seed in range(30)} == {"b", "d"}
    unseeded = control_tasks(ranking, 1, 7)
    assert control_tasks(ranking, 1, 7, lambda name: False) == unseeded  # none informative: as if none were asked


def comparison_with_a_control_on_the_related_space(workspace, suite: str = "s", target: str = "t") -> Comparison:
    """A stored comparison of two repeats: the farthest task's space is the related space in repeat 0 (same
    genotype, another source name) and not in repeat 1; the random task's differs in repeat 0 and its record for
    repeat 1 is gone."""
    import random

    from tanas_core.search.space import related_space, standard_space
    from tanas_core.workspace.records import SearchRecord
    from tanas_core.workspace.store import config_key

    mine, other = standard_space().sample_distinct(2, random.Random(0))
    spaces = {"related-0": related_space([("near", mine)]), "far-0": related_space([("far", mine)]),
              "random-0": related_space([("drawn", other)]), "related-1": related_space([("near", mine)]),
              "far-1": related_space([("far", other)])}
    for run_id, space in spaces.items():
        workspace.put_result("search", run_id, SearchRecord(
            run_id=run_id, suite=suite, target=target, method="fuse", space=space.describe(), status="done",
            preset="demo", budget={}, seed=0).to_payload())
    labels = {"related": "FUSE, related space", "far": "FUSE, farthest task's space",
              "random": "FUSE, a random task's space"}
    rows = [ComparisonRow(method=labels[kind], architecture="cell", test_accuracy=0.9, val_accuracy=0.9,
                          params_m=0.1, search_seconds=1.0, train_seconds=1.0, train_epochs=1.0, device="cpu",
                          run_id=f"{kind}-{repeat}", repeat=repeat)
            for repeat in (0, 1) for kind in labels]
    result = Comparison(suite=suite, target=target, rows=rows, csv="", closest=[], seconds=0.0, preset="demo",
                        budget={})
    workspace.put_result("comparison", config_key(dict(suite=suite, target=target)), result.to_payload())
    return result


def test_a_control_that_searched_the_related_space_itself_is_flagged(workspace):
    """Two baselines with one stored genotype give one space whatever its source name: a control searching it ties
    with the related space by construction, and the comparison says so; a control whose record is gone is not
    compared."""
    from tanas_core.search.comparison import control_warnings, controls_on_the_related_space

    result = comparison_with_a_control_on_the_related_space(workspace)
    assert controls_on_the_related_space(result, workspace) == {
        "FUSE, farthest task's space": (1, 2), "FUSE, a random task's space": (0, 1)}
    [warning] = control_warnings(result, workspace)
    assert warning.startswith("FUSE, farthest task's space: the related space itself in 1 of 2")


def test_a_distance_interval_is_centred_on_its_estimate_not_on_the_biased_resamples():
    """Resampled Fishers are noisier, so resampled distances sit above their seed's value (here by 0.04, as the
    issue saw: estimate 0.1275, percentile interval 0.131-0.176). The interval removes each seed's resampling bias:
    it holds the estimate, keeps the resamples' width plus the seeds' spread, and a raw percentile interval does
    not hold it."""
    from tanas_core.workspace.records import DistanceResult

    rng = np.random.default_rng(3)
    seeds, resamples = 5, 40
    matrices = np.zeros((seeds, 2, 2))
    matrices[:, 0, 1] = 0.1275 + rng.normal(0, 0.004, size=seeds)
    bootstrap = np.zeros((seeds, resamples, 2, 2))
    bootstrap[:, :, 0, 1] = matrices[:, None, 0, 1] + 0.04 + rng.normal(0, 0.01, size=(seeds, resamples))
    result = DistanceResult(suite="s", arch="vgg16", metric="frechet", sigma=1e-3, seeds=list(range(seeds)),
                            tasks=["a", "b"], matrices=matrices, noise_floor=np.zeros(2), seconds=0.0,
                            bootstrap=bootstrap)
    estimate = result.closest("b", 1)[0]["distance"]
    raw_low, raw_high = np.percentile(bootstrap[:, :, 0, 1], [2.5, 97.5])
    assert not raw_low <= estimate <= raw_high  # the percentile interval misses its own estimate
    low, high = result.interval("a", "b")
    assert low < estimate < high
    assert high - low == pytest.approx(raw_high - raw_low, rel=0.35)  # same spread, moved onto the estimate
    # without a bootstrap: the seeds' own spread around their mean
    plain = DistanceResult(suite="s", arch="vgg16", metric="frechet", sigma=1e-3, seeds=list(range(seeds)),
                           tasks=["a", "b"], matrices=matrices, noise_floor=np.zeros(2), seconds=0.0)
    low, high = plain.interval("a", "b")
    assert matrices[:, 0, 1].min() <= low < estimate < high <= matrices[:, 0, 1].max()
