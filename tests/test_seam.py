"""The seam between the library and its front-ends (issue 11): typed requests, one run context, one cancel, the
bugs that came from copied defaults. Runs on scikit-learn's bundled digits (no data pack needed)."""
from __future__ import annotations

import dataclasses

import pytest

from tanas_core.data.tasks import make_task
from tanas_core.distances.matrices import distance_matrices
from tanas_core.errors import Cancelled, TanasError
from tanas_core.jobs.kinds import JOB_KINDS
from tanas_core.jobs.runner import JobRunner, list_jobs
from tanas_core.requests import (
    ClosestSettings,
    CompareRequest,
    DemoRequest,
    DistanceRequest,
    FisherConfig,
    MeasurementSettings,
    SearchBudget,
    SearchRequest,
    ValidateRequest,
    ZooRequest,
    ZooSearchRequest,
)
from tanas_core.search import nas
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.context import RunContext, quiet_context
from tanas_core.workspace.store import Workspace

SMALL_FISHER = FisherConfig(samples=16, head_samples=32)
TINY_SEARCH = SearchBudget(candidates=2, rounds=1, epochs_per_round=0.5, final_epochs=1.0, window=2, min_steps=2)


@pytest.fixture
def digits_workspace(workspace) -> Workspace:
    """A workspace whose custom suite is three tasks on the bundled digits."""
    for task in (make_task("digits-zero", "digits", [["0"]], other=True),
                 make_task("digits-low-high", "digits", [["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]]),
                 make_task("digits-10class", "digits", [[str(d)] for d in range(10)])):
        workspace.save_task(task)
    return workspace


def _related_request(**changes) -> SearchRequest:
    closest = ClosestSettings(archs=("vgg16",), fisher=SMALL_FISHER)
    return SearchRequest(**dict(dict(target="custom:digits-10class", space="related", preset="tiny",
                                     budget=TINY_SEARCH, closest=closest), **changes))


# ---------------------------------------------------------------------------------------------- requests

@pytest.mark.parametrize("request_type", [ZooRequest, DistanceRequest, SearchRequest, CompareRequest,
                                          ZooSearchRequest, DemoRequest, ClosestSettings, SearchBudget,
                                          FisherConfig, ValidateRequest])
def test_every_request_round_trips_through_json(request_type):
    values = dict(suite="mnist4") if "suite" in {f.name for f in dataclasses.fields(request_type)} else {}
    if request_type in (SearchRequest, CompareRequest):
        values = dict(target="mnist4:mnist-digit0")
    request = request_type(**values)
    request.validate()
    assert request_type.from_dict(request.to_dict()) == request
    with pytest.raises(TanasError, match="unknown field"):
        request_type.from_dict(dict(request.to_dict(), speed=11))


def test_defaults_live_in_the_request_types_only():
    # a missing or None field is the request's default; JSON numbers come back as the field's type
    assert DistanceRequest.from_dict(dict(suite="mnist4", sigma=None, seeds=2.0)) == DistanceRequest(suite="mnist4",
                                                                                                      seeds=2)
    assert SearchBudget.from_dict(dict(epochs_per_round=3)).to_dict() == SearchBudget(epochs_per_round=3.0).to_dict()
    assert ClosestSettings().distance_request("ld8", "demo").fisher == FisherConfig()
    with pytest.raises(TanasError, match="candidates must be in 2..32"):
        SearchBudget.from_dict(dict(candidates=33))
    assert SearchBudget.limits("candidates") == (2, 32)


def test_m_is_lowered_to_what_a_task_holds_and_a_task_with_too_few_images_is_refused(digits_workspace, monkeypatch,
                                                                                    real_data):
    """M is the most images per Fisher: a task that holds fewer (in its held-out probe images or its test images)
    uses all it holds, rounded to its outputs, in every draw, so the default runs on any task the Tasks page accepts;
    only a task under ``MIN_PROBE_IMAGES`` is refused, naming it."""
    from tanas_core.data import probe_images
    from tanas_core.data.probe_images import probe_capacity, probe_count
    from tanas_core.data.suites import get_suite
    from tanas_core.workspace.checks import check_probe

    cat_dog_else = make_task("cat-dog-else", "cifar10", [["cat"], ["dog"]], other=True)
    assert probe_capacity(cat_dog_else) == 600 and probe_count(cat_dog_else, 800) == 600
    assert probe_count(cat_dog_else, 500) == 498 and probe_count(get_suite("ld8").tasks[0], 800) == 800
    digits = [task for task in digits_workspace.load_tasks() if task.name in ("digits-zero", "digits-10class")]
    request = DistanceRequest(suite="custom", fisher=FisherConfig(samples=400))
    request.validate(digits_workspace)  # digits-zero holds 56: it runs with 56
    assert {task.name: probe_count(task, 400) for task in digits} == {"digits-zero": 56, "digits-10class": 280}
    monkeypatch.setattr(probe_images, "MIN_PROBE_IMAGES", 100)
    monkeypatch.setattr("tanas_core.workspace.checks.MIN_PROBE_IMAGES", 100)
    with pytest.raises(TanasError, match=r"task 'digits-zero' holds 56 Fisher images .* fewer than the 100"):
        check_probe(FisherConfig(samples=400), digits)


def test_a_fisher_setting_added_later_keeps_the_stored_keys_at_the_value_they_were_computed_with():
    # head_weight_decay came after Fishers were stored with 1e-4: at 1e-4 their keys are unchanged, else they differ
    # (today's default 0.3 included); a stored request without it is read at 1e-4, not at today's default
    assert "head_weight_decay" not in FisherConfig(head_weight_decay=1e-4).identity()
    assert FisherConfig(head_weight_decay=1e-2).identity() == dict(vars(FisherConfig()), head_weight_decay=1e-2)
    assert FisherConfig().identity()["head_weight_decay"] == FisherConfig.default("head_weight_decay") != 1e-4
    old_record = {name: value for name, value in FisherConfig().to_dict().items() if name != "head_weight_decay"}
    assert FisherConfig.from_stored(old_record).head_weight_decay == 1e-4
    assert FisherConfig.from_stored(FisherConfig().to_dict()) == FisherConfig()
    with pytest.raises(TanasError, match="head_weight_decay must be in"):
        FisherConfig(head_weight_decay=-1.0).validate()


def test_a_report_holds_only_what_it_uses_and_reads_a_stored_request_that_held_one_distances_settings():
    # a report's metrics, views and references say which distances it computes: it has no single metric, view or
    # reference of its own, and a job stored while it held them (ignored) still reads, as the same report
    shared = {f.name for f in dataclasses.fields(MeasurementSettings)}
    assert shared <= {f.name for f in dataclasses.fields(ValidateRequest)}
    assert not {"metric", "view", "reference"} & {f.name for f in dataclasses.fields(ValidateRequest)}
    request = ValidateRequest(suite="mnist4", seeds=3, fisher=FisherConfig(samples=256))
    stored = dict(request.to_dict(), metric="logdet", view="tanas", reference="retrained")
    assert ValidateRequest.from_dict(stored) == request
    with pytest.raises(TanasError, match="unknown field"):
        DistanceRequest.from_dict(dict(DistanceRequest(suite="mnist4").to_dict(), metrics=["logdet"]))
    row = request.distance_request("logdet", "tanas", "redraw")
    assert (row.metric, row.view, row.reference, row.seeds, row.fisher) == ("logdet", "tanas", "redraw", 3,
                                                                            request.fisher)
    judged = ValidateRequest.judging(DistanceRequest(suite="mnist4", seeds=4, metric="logdet", view="tanas"))
    assert judged.seeds == 4 and judged.metrics == ValidateRequest().metrics


# ---------------------------------------------------------------------------------------------- jobs

def test_a_job_request_is_validated_before_anything_is_launched(digits_workspace):
    runner = JobRunner(digits_workspace, JOB_KINDS)
    with pytest.raises(TanasError, match="has no task 'nope'"):
        runner.submit("search", dict(target="custom:nope"))
    with pytest.raises(TanasError, match="unknown field"):
        runner.submit("zoo", dict(suite="custom", colour="red"))
    assert list_jobs(digits_workspace) == []


def test_launching_the_same_job_twice_attaches_to_the_running_one(digits_workspace, tiny_preset):
    runner = JobRunner(digits_workspace, JOB_KINDS)
    request = ZooRequest(suite="custom", archs=("vgg16",), preset="tiny")
    first = runner.submit("zoo", request)
    second = runner.submit("zoo", request.to_dict())
    assert first == second and len(list_jobs(digits_workspace)) == 1
    assert runner.wait(first, 120).status == "done"


def test_the_demo_ends_with_the_verdict_of_its_own_distances_and_its_lesson(digits_workspace, tiny_preset,
                                                                            monkeypatch):
    """Issue 26: the demo's own smallest validation report is stored, so Home and the Distances page show a verdict
    without another job."""
    from tanas_core.distances.validation import latest_validation, row_name, verdict

    demo = DemoRequest(suite="custom", target="digits-10class", preset="tiny", budget=TINY_SEARCH)
    runner = JobRunner(digits_workspace, JOB_KINDS)
    job = runner.wait(runner.submit("demo", demo), 600)
    assert job.status == "done", job.error
    distances = demo.distances()
    row = row_name(distances.view, distances.metric)
    assert job.result["verdict"]["row"] == row
    report = latest_validation(digits_workspace, "custom", "tiny", distances.fisher, row)
    assert report is not None and report["seeds"] == demo.verdict_seeds and list(report["metrics"]) == [row]
    assert job.result["verdict"]["answer"] == verdict(report, row)[0] and verdict(report, row)[0] in ("yes", "no")
    _check_the_lesson(digits_workspace, demo, job, monkeypatch)


def _check_the_lesson(workspace, demo, job, monkeypatch) -> None:
    """The lesson on the demo's results: seven steps; eq. 8 recomputed from the stored Fishers is the heatmap's cell;
    every figure writes PNG and SVG; the page shows each step with both downloads."""
    from streamlit.testing.v1 import AppTest

    from conftest import REPO
    from tanas_core.app.lesson import figure_bytes, lesson_steps

    steps = lesson_steps(workspace, demo, job.result["run_id"])
    assert [step.title[:2] for step in steps] == ["1.", "2.", "3.", "4.", "5.", "6.", "7."]
    drawn = [step for step in steps if step.figure is not None]
    assert len(drawn) == 6  # all but transfer, which the demo does not measure (its sentence says so)
    equation = steps[3].sentence
    recomputed, shown = equation.split("= ")[1].split(" ")[0], equation.split("heatmap's cell: ")[1].split(")")[0]
    assert recomputed == shown, equation
    assert job.result["verdict"]["answer"] in steps[4].sentence
    for step in drawn:
        assert figure_bytes(step.figure, "png").startswith(b"\x89PNG") and b"<svg" in figure_bytes(step.figure, "svg")
    monkeypatch.setenv("TANAS_HOME", str(workspace.root))
    app = AppTest.from_file(str(REPO / "app_pages/5_Lesson.py"), default_timeout=180).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    for title in [step.title for step in steps][1:]:
        next(b for b in app.button if b.label == "Next step →").click()
        app.run()
        assert not app.exception and app.header[0].value == title
    assert app.query_params["step"] in (steps[-1].title, [steps[-1].title])
    assert {b.label for b in app.get("download_button")} == {"Download PNG", "Download SVG"}


def test_a_cancelled_job_is_cancelled_not_failed_and_cancel_is_not_an_os_error(digits_workspace, tiny_preset):
    assert not issubclass(Cancelled, OSError) and not issubclass(Cancelled, ValueError)
    with pytest.raises(Cancelled):
        train_zoo(ZooRequest(suite="custom", archs=("vgg16",), preset="tiny"),
                  RunContext(digits_workspace, "cpu", cancelled=lambda: True))
    assert digits_workspace.list_networks() == []
    runner = JobRunner(digits_workspace, JOB_KINDS)
    job = runner.submit("zoo", ZooRequest(suite="custom", archs=("vgg16", "resnet18"), seeds=2, preset="tiny"))
    runner.cancel(job)
    final = runner.wait(job, 120)
    assert final.status == "cancelled" and final.error is None and "disk" not in final.message


def test_a_bug_in_a_job_keeps_its_traceback_a_user_error_does_not(digits_workspace):
    def buggy(request, context):
        return {}["missing"]

    def refused(request, context):
        raise TanasError("choose another suite")

    from tanas_core.jobs.runner import JobKind

    runner = JobRunner(digits_workspace, dict(buggy=JobKind(ZooRequest, buggy), refused=JobKind(ZooRequest, refused)))
    bug = runner.wait(runner.submit("buggy", ZooRequest(suite="custom")), 30)
    user = runner.wait(runner.submit("refused", ZooRequest(suite="custom", seeds=2)), 30)
    assert bug.status == user.status == "failed"
    assert bug.error.startswith("KeyError") and "Traceback" in bug.error
    assert user.error == "choose another suite"


def test_every_job_hands_the_memory_it_freed_back_to_the_system_however_it_ends(digits_workspace, monkeypatch):
    import tanas_core.jobs.runner as runner_module
    from tanas_core.jobs.runner import JobKind

    released = []
    monkeypatch.setattr(runner_module, "release_free_memory", lambda: released.append(1) or True)

    def fails(request, context):
        raise TanasError("no")

    runner = JobRunner(digits_workspace, dict(ok=JobKind(ZooRequest, lambda request, context: {}),
                                              fails=JobKind(ZooRequest, fails)))
    assert runner.wait(runner.submit("ok", ZooRequest(suite="custom")), 30).status == "done"
    assert runner.wait(runner.submit("fails", ZooRequest(suite="custom", seeds=2)), 30).status == "failed"
    assert len(released) == 2
    monkeypatch.undo()
    import platform

    assert runner_module.release_free_memory() is (platform.libc_ver()[0] == "glibc")  # elsewhere: False, no error


# ---------------------------------------------------------------------------------------------- progress, bug 3

def test_progress_is_monotone_and_step_level_across_every_phase_of_a_related_search(digits_workspace,
                                                                                    tiny_preset):
    seen = []
    context = RunContext(digits_workspace, "cpu", on_progress=lambda message, fraction: seen.append((message,
                                                                                                    fraction)))
    record = nas.run_search(_related_request(), context)
    assert record.done and record.test_accuracy is not None
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    phases = ["closest tasks", "genotype of", "fuse search", "training the winner"]
    firsts = [next(i for i, (message, _) in enumerate(seen) if phase in message) for phase in phases]
    assert firsts == sorted(firsts)  # each phase shows up, in order, on one scale
    winner = [fraction for message, fraction in seen if "training the winner" in message]
    assert min(winner) >= 0.85 and len(set(winner)) > 1  # no jump back to 0 %, and it moves step by step
    search = [fraction for message, fraction in seen if "round 1/1" in message and "genotype" not in message]
    assert len(set(search)) > 1 and 0 < min(search)  # a 1-round search moves too


# ---------------------------------------------------------------------------------------------- related space, bug 6

def test_the_related_space_uses_the_closest_tasks_stored_genotype_whatever_its_budget(digits_workspace,
                                                                                     tiny_preset, monkeypatch):
    request = _related_request()
    distance_matrices(request.closest.distance_request("custom", "tiny"), quiet_context(digits_workspace, "cpu"))
    preview = nas.preview_related_space(digits_workspace, request)
    [closest] = [row["baseline"] for row in preview.closest]
    assert preview.space is None and preview.missing == [closest]
    # the demo (or any other budget) stored the closest task's genotype
    other_budget = SearchBudget(candidates=3, rounds=1, epochs_per_round=0.3, window=2, min_steps=2)
    stored = nas.run_search(SearchRequest(target=f"custom:{closest}", space="standard", preset="tiny",
                                          budget=other_budget, final_training=False),
                            quiet_context(digits_workspace, "cpu"))
    preview = nas.preview_related_space(digits_workspace, request)
    assert preview.space is not None and preview.missing == []
    assert preview.budgets() == {closest: other_budget} and preview.records[closest].run_id == stored.run_id
    # and a related search with the default budget reuses it: one FUSE run (the target's), no sub-search
    calls = []
    original = nas.fuse
    monkeypatch.setattr(nas, "fuse", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    record = nas.run_search(request.replace(budget=SearchBudget(candidates=2, rounds=1, epochs_per_round=0.3,
                                                                final_epochs=1.0)),
                            quiet_context(digits_workspace, "cpu"))
    assert len(calls) == 1 and record.sources == [closest]


# ---------------------------------------------------------------------------------------------- custom tasks, bug 8

def test_reusing_a_custom_task_name_is_refused_unless_replaced_and_old_networks_go(digits_workspace, tiny_preset):
    train_zoo(ZooRequest(suite="custom", archs=("vgg16",), preset="tiny", tasks=("digits-zero",)),
              quiet_context(digits_workspace, "cpu"))
    old = digits_workspace.list_networks()
    assert [r.task for r in old] == ["digits-zero"]
    redefined = make_task("digits-zero", "digits", [["0"], ["1"]], other=True)
    with pytest.raises(TanasError, match="already exists with another definition"):
        digits_workspace.save_task(redefined)
    assert digits_workspace.save_task(make_task("digits-zero", "digits", [["0"]], other=True)) == []  # same: no-op
    removed = digits_workspace.save_task(redefined, replace=True)
    assert removed == [old[0].key] and digits_workspace.list_networks() == []
    assert not (digits_workspace.root / old[0].checkpoint).exists()
    [task] = [t for t in digits_workspace.load_tasks() if t.name == "digits-zero"]
    assert task.num_outputs == 3


# ---------------------------------------------------------------------------------------------- repeated comparison

def test_a_repeated_comparison_runs_end_to_end_with_intervals_and_paired_verdicts(digits_workspace, tiny_preset):
    """``compare --repeats 2`` through the real pipeline: zoo networks of two seeds, five searches per repeat (the
    source's three and the two controls), each winner trained and tested, the summary's intervals, the paired
    verdicts, the stored table and its CSV."""
    from pathlib import Path

    from tanas_core.data.suites import resolve_target
    from tanas_core.search.comparison import compare, controls_on_the_related_space, latest_comparison

    request = CompareRequest(target="custom:digits-10class", preset="tiny", repeats=2,
                             budget=dataclasses.replace(TINY_SEARCH, random_candidates=2, random_epochs=0.5),
                             closest=ClosestSettings(archs=("vgg16",), fisher=SMALL_FISHER))
    result = compare(request, quiet_context(digits_workspace, "cpu"))
    assert len(result.rows) == 2 * 8 and sorted({row.repeat for row in result.rows}) == [0, 1]
    searched = [row for row in result.rows if row.search_seconds is not None]
    assert len({(row.method, row.repeat) for row in searched}) == 10  # 5 searches x 2 seeds, each trained once
    # the controls search the space of the baseline that is not the closest (3 tasks: it is the farthest and the
    # only one left to draw), the related space that of the closest
    closest = result.closest[0]["baseline"]
    other = ({"digits-zero", "digits-low-high"} - {closest}).pop()
    sources = {row.method: row.closest_task for row in searched}
    assert sources["FUSE, related space"] == closest
    assert sources["FUSE, farthest task's space"] == sources["FUSE, a random task's space"] == other
    # a control searched the related space itself exactly when its baseline's stored genotype is the closest's
    stored = {name: nas.best_stored_genotype(digits_workspace, *resolve_target(f"custom:{name}", digits_workspace),
                                             "tiny")[0] for name in (closest, other)}
    same = 2 * (stored[closest] == stored[other])
    assert controls_on_the_related_space(result, digits_workspace) == {
        "FUSE, farthest task's space": (same, 2), "FUSE, a random task's space": (same, 2)}
    summary = {row["method"]: row for row in result.summary()}
    assert len(summary) == 8 and all(row["repeats"] == 2 for row in summary.values())
    for row in summary.values():
        assert row["test_accuracy_low"] <= row["test_accuracy"] <= row["test_accuracy_high"]
    paired = {row["method"]: row for row in result.paired()}
    assert set(paired) == set(summary) - {"FUSE, related space"}
    assert all(row["n"] == 2 and row["verdict"] in ("higher", "lower", "tie") for row in paired.values())
    assert Path(result.csv).read_text().count("\n") == 1 + len(result.rows)
    assert latest_comparison(digits_workspace, "custom", "digits-10class").rows == result.rows


@pytest.mark.unit
def test_a_reports_time_is_its_fisher_count_times_this_workspaces_measured_fisher_time(workspace):
    from tanas_core.jobs.estimates import validation_estimate

    for key, seconds in (("a", 1.0), ("b", 3.0), ("c", 2.5)):
        workspace.put_result("fisher", key, dict(arch="vgg16", seconds=seconds))
    report = ValidateRequest(suite="mnist4", archs=("vgg16",), seeds=3)
    cost = validation_estimate(workspace, report, tasks=4)
    assert cost["fishers"] == report.fishers_needed(4) and cost["per_arch"] == dict(vgg16=2.5)
    assert cost["seconds"] == pytest.approx(cost["fishers"] * 2.5)
    both = validation_estimate(workspace, report.replace(archs=("vgg16", "resnet18")), tasks=4)
    assert both["seconds"] is None and both["unmeasured"] == ["resnet18"]
