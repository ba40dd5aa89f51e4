"""One registration per kind of thing: a metric added by one registration is listed by the CLI, the Distances page
and the validation report; every registered metric's batched form agrees with its per-pair function."""
from __future__ import annotations

import pytest
import torch

from conftest import REPO
from tanas_core.cli import parse_request
from tanas_core.data.tasks import make_task
from tanas_core.distances.metrics import Metric, diagonal_summary, get_metric, register_metric, summary_distance
from tanas_core.distances.validation import validate_distances
from tanas_core.errors import TanasError
from tanas_core.registry import ARCHITECTURES, METRICS, PRESETS, SUITES, VIEWS, Registry
from tanas_core.requests import DistanceRequest, FisherConfig, ValidateRequest
from tanas_core.workspace.context import quiet_context

TOY = "toy-l1"


def _unit_mean(diagonals: torch.Tensor) -> torch.Tensor:
    return diagonals.double() / diagonals.double().mean(-1, keepdim=True)


def _toy_pair(fisher_b, fisher_t, sigma, segments) -> float:
    return float((_unit_mean(fisher_b) - _unit_mean(fisher_t)).abs().mean())


@pytest.fixture
def toy_metric():
    """A metric that is not the project's: the mean absolute difference of unit-mean diagonals, registered for one
    test the way a contributor's file would register it, and removed afterwards."""
    metric = register_metric(Metric(
        name=TOY, label="toy L1 of unit-mean diagonals", source="a test", pair=_toy_pair,
        summary=lambda diagonals, segments, sigma: _unit_mean(diagonals),
        compare=lambda summary_b, summary_t: (summary_b - summary_t).abs().mean(-1)))
    yield metric
    del METRICS[TOY]


@pytest.mark.unit
def test_a_registry_refuses_a_taken_name_and_names_its_choices_for_an_unknown_one():
    registry = Registry("widget", "tanas_core.errors")  # a loader that registers nothing
    registry.register("a", 1)
    with pytest.raises(TanasError, match="already registered"):
        registry.register("a", 2)
    with pytest.raises(TanasError, match="unknown widget 'b': choose one of a"):
        registry["b"]
    assert "b" not in registry and registry.get("b") is None and list(registry) == ["a"]


@pytest.mark.unit
def test_the_built_ins_are_registered_in_the_order_every_list_shows():
    assert list(ARCHITECTURES) == ["vgg16", "resnet18", "densenet121"]
    assert list(METRICS) == ["logdet", "logdet-scaled", "frechet", "frechet-sorted", "frechet-mass", "frechet-full"]
    assert list(VIEWS) == ["tanas", "probe"]
    assert {"demo", "long", "smoke", "paper"} <= set(PRESETS)
    assert {"ld8", "mnist4", "cifar10_4", "cifar100_4", "quickdraw"} <= set(SUITES)
    # what the views say of themselves matches what they compute (tests/test_store_zoo.py, test_trust.py)
    assert not VIEWS["tanas"].symmetric and VIEWS["probe"].symmetric
    assert get_metric("frechet-full").representation == "factor" and not get_metric("frechet-full").in_report
    assert [name for name in METRICS if get_metric(name).uses_sigma] == ["logdet", "logdet-scaled"]


@pytest.mark.unit
@pytest.mark.parametrize("name", [name for name in METRICS if METRICS[name].summary is not None] + [TOY])
def test_every_registered_metrics_batched_form_equals_its_per_pair_function(name, toy_metric):
    # what the bootstrap computes for many resamples at once, against the per-pair function one by one
    generator = torch.Generator().manual_seed(3)
    segments = [7, 1, 12, 20]
    baselines = torch.rand(5, 40, generator=generator, dtype=torch.float64) ** 3
    target = torch.rand(40, generator=generator, dtype=torch.float64) ** 3
    metric = get_metric(name)
    batched = summary_distance(name, diagonal_summary(name, baselines, segments, 1e-3),
                               diagonal_summary(name, target, segments, 1e-3)[None])
    reference = torch.tensor([metric.pair(b, target, 1e-3, segments) for b in baselines], dtype=torch.float64)
    torch.testing.assert_close(batched, reference, rtol=1e-9, atol=1e-12)
    if metric.symmetric:
        assert metric.pair(target, baselines[0], 1e-3, segments) == pytest.approx(reference[0].item(), rel=1e-12)


@pytest.mark.unit
def test_a_registered_metric_is_a_cli_choice_and_a_request_choice(toy_metric):
    request = parse_request(["distance", "--suite", "mnist4", "--metric", TOY])
    assert isinstance(request, DistanceRequest) and request.metric == TOY
    assert TOY in ValidateRequest().metrics  # the report includes it by default (in_report)
    DistanceRequest(suite="mnist4", metric=TOY).validate()
    with pytest.raises(SystemExit):  # argparse refuses a choice that is not registered
        parse_request(["distance", "--suite", "mnist4", "--metric", "unregistered"])
    with pytest.raises(TanasError, match="metric must be one of .*toy-l1, got 'unregistered'"):
        DistanceRequest(suite="mnist4", metric="unregistered").validate()


def test_a_registered_metric_is_in_the_distances_page_select_box(toy_metric, real_data):
    from streamlit.testing.v1 import AppTest

    from test_pages import by_label

    app = AppTest.from_file(str(REPO / "app_pages/3_Distances.py"), default_timeout=120).run()
    select = by_label(app.selectbox, "Metric")
    assert toy_metric.label in select.options, select.options
    select.set_value(TOY)
    app.run()
    assert not app.exception, app.exception


def test_a_registered_metric_gets_every_figure_of_the_validation_report(toy_metric, workspace, tiny_preset):
    for task in (make_task("digits-zero", "digits", [["0"]], other=True),
                 make_task("digits-low-high", "digits", [["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]]),
                 make_task("digits-10class", "digits", [[str(d)] for d in range(10)])):
        workspace.save_task(task)
    request = ValidateRequest(suite="custom", archs=("vgg16",), seeds=2, preset="tiny", replicates=1,
                              metrics=("frechet", TOY), views=("probe",), bootstrap=4,
                              fisher=FisherConfig(samples=24, head_samples=48))
    report = validate_distances(request, quiet_context(workspace, "cpu"))
    figures = report["metrics"][f"probe:{TOY}"]
    assert 0 <= figures["identity_top1"] <= 1 and figures["signal_to_noise"] > 0
    assert figures["logdet_lift"] is None  # the toy metric registers no lift
    assert set(figures["intervals"]) == {"identity_top1", "signal_to_noise"}
