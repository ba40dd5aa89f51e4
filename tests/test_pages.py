"""The app's pages in-process (AppTest) on empty and populated real workspaces, and the background jobs."""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from tanas_core.fuse import SearchBudget
from tanas_core.jobs import JobRunner, get_job, list_jobs
from tanas_core.store import Workspace
from tanas_core.task_distances import FisherConfig, distance_matrices
from tanas_core.tasks import get_suite

PAGES = ["app.py", "pages/1_Tasks.py", "pages/2_Zoo.py", "pages/3_Distances.py", "pages/4_Search.py"]
SMALL_FISHER = dict(samples=32, head_samples=64)


def run_page(path: str, **session) -> AppTest:
    app = AppTest.from_file(str(REPO / path), default_timeout=120)
    for key, value in session.items():
        app.session_state[key] = value
    return app.run()


def wait_for(workspace: Workspace, job_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while get_job(workspace, job_id).active:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {get_job(workspace, job_id).status} after {timeout} s")
        time.sleep(0.5)


def plotly_specs(app: AppTest) -> list[dict]:
    return [json.loads(element.proto.spec) for element in app.get("plotly_chart")]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_an_empty_workspace(real_data, path):
    app = run_page(path)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert app.title


@pytest.fixture(scope="module")
def populated_root(tmp_path_factory, real_data):
    """Built once: a workspace with a 4-task zoo (VGG, 1 seed, smoke preset) and its log-det distances."""
    root = tmp_path_factory.mktemp("populated") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TANAS_DATA_DIR", str(real_data))
        result = distance_matrices(Workspace(root), get_suite("mnist4"), "vgg16", "logdet", [0], "smoke",
                                   config=FisherConfig(**SMALL_FISHER), device="cpu")
    return root, result


@pytest.fixture
def populated(populated_root):
    """A private copy of the populated workspace as this test's TANAS_HOME."""
    root, result = populated_root
    home = Workspace().root
    shutil.rmtree(home)
    shutil.copytree(root, home)
    return Workspace(), get_suite("mnist4"), result


def by_label(widgets, label: str):
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return matches[0]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_a_populated_workspace(populated, path):
    app = run_page(path)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]


def test_distances_page_shows_the_stored_heatmap(populated):
    workspace, suite, result = populated
    app = AppTest.from_file(str(REPO / "pages/3_Distances.py"), default_timeout=120).run()
    by_label(app.selectbox, "Suite").set_value("mnist4")
    by_label(app.selectbox, "Preset").set_value("smoke")
    by_label(app.number_input, "M: images per Fisher").set_value(SMALL_FISHER["samples"])
    by_label(app.number_input, "images for the refitted head").set_value(SMALL_FISHER["head_samples"])
    app.run()
    assert not app.exception and not app.error
    specs = plotly_specs(app)
    heatmaps = [trace for spec in specs for trace in spec["data"] if trace["type"] == "heatmap"]
    assert heatmaps, "no heatmap on the page"
    shown = heatmaps[0]["z"]
    assert heatmaps[0]["x"] == result.tasks
    assert np.allclose(np.asarray(shown, dtype=float), result.mean)
    assert any(trace.get("name") == "closest baseline" for spec in specs for trace in spec["data"])
    assert app.get("download_button")


def test_distances_page_reports_bad_input_with_st_error(populated):
    app = AppTest.from_file(str(REPO / "pages/3_Distances.py"), default_timeout=120).run()
    by_label(app.number_input, "σ (log-det)").set_value(-1.0).run()
    assert not app.exception
    assert any("σ must be positive" in e.value for e in app.error)


def test_custom_task_form_validates_and_saves(real_data):
    app = run_page("pages/1_Tasks.py")
    app.text_input[0].set_value("bad task name!")
    app.text_area[0].set_value("0, 1\n2")
    app.button[0].click().run()
    assert not app.exception
    assert any("must be 1-64 characters" in e.value for e in app.error)
    app.text_input[0].set_value("overlap")
    app.text_area[0].set_value("0, 1\n1, 2")
    app.button[0].click().run()
    assert any("appears" in e.value or "twice" in e.value for e in app.error), [e.value for e in app.error]
    app.text_input[0].set_value("low-vs-high")
    app.text_area[0].set_value("0, 1, 2, 3, 4\n5, 6, 7, 8, 9")
    app.button[0].click().run()
    assert not app.error and app.success
    assert [t.name for t in Workspace().load_tasks()] == ["low-vs-high"]
    assert len(app.image) == 2  # dataset grid + the new task's per-output preview


def test_search_page_launches_a_fuse_job_and_the_alpha_chart_gets_data(real_data):
    app = run_page("pages/4_Search.py")
    by_label(app.selectbox, "Suite").set_value("mnist4").run()
    by_label(app.selectbox, "Preset").set_value("smoke").run()
    by_label(app.radio, "Space").set_value("standard")
    values = {"FUSE candidates C": 2, "FUSE rounds": 1, "epochs per round": 1.0, "final training epochs": 0.5}
    for widget in app.number_input:
        if widget.label in values:
            widget.set_value(values[widget.label])
    app.button[0].click().run()  # the form's submit button
    assert not app.exception and not app.error
    workspace = Workspace()
    jobs = list_jobs(workspace, "search")
    assert len(jobs) == 1 and jobs[0].params["space"] == "standard"
    wait_for(workspace, jobs[0].id)
    assert get_job(workspace, jobs[0].id).status == "done", get_job(workspace, jobs[0].id).error
    app.run()
    specs = plotly_specs(app)
    alpha = [spec for spec in specs if "softmax" in json.dumps(spec.get("layout", {}).get("title", ""))]
    assert alpha and len(alpha[0]["data"]) == 2 and len(alpha[0]["data"][0]["x"]) >= 1
    assert app.success  # the winner's test accuracy


def test_jobs_record_failures_cancel_and_interrupted_restarts(real_data, tiny_preset):
    workspace = Workspace()
    runner = JobRunner(workspace)
    failing = runner.submit("search", dict(target="mnist4:no-such-task"))
    assert runner.wait(failing, 60).status == "failed"
    assert "has no task 'no-such-task'" in get_job(workspace, failing).error
    with pytest.raises(ValueError, match="unknown job kind"):
        runner.submit("mine-bitcoin", {})

    # cancel: a search stops between steps and keeps its partial history
    job = runner.submit("search", dict(target="mnist4:mnist-digit0", space="standard", preset="smoke",
                                       budget=dict(candidates=2, rounds=5, epochs_per_round=5)))
    deadline = time.monotonic() + 120
    while not get_job(workspace, job).info.get("run_id") and time.monotonic() < deadline:
        time.sleep(0.2)
    runner.cancel(job)
    final = runner.wait(job, 120)
    assert final.status == "cancelled"
    run = workspace.get_result("search", final.info["run_id"])[0]
    assert run["status"] == "stopped" and workspace.read_events(f"search:{final.info['run_id']}")

    # a job whose process died is marked interrupted by the next runner, and can be relaunched
    dead_owner = f"{os.uname().nodename}:999999"  # this host, a process id that does not exist
    with workspace.connect() as conn:
        conn.execute("INSERT INTO jobs VALUES ('zoo-dead', 'zoo', ?, 'running', 0.4, 'training', NULL, NULL, '{}', "
                     "?, 0, 0, 0)", (json.dumps(dict(suite="mnist4", archs=["vgg16"], seeds=1, preset="smoke",
                                                     tasks=["mnist-digit0"])), dead_owner))
    JobRunner(workspace)  # what a server restart does: a new runner recovers lost jobs
    assert get_job(workspace, "zoo-dead").status == "interrupted"
    relaunched = runner.relaunch("zoo-dead")
    assert runner.wait(relaunched, 120).status == "done"


def test_two_users_jobs_get_separate_results(real_data):
    workspace = Workspace()
    first, second = JobRunner(workspace), JobRunner(Workspace(workspace.root))
    budget = dict(candidates=2, rounds=1, epochs_per_round=1, final_epochs=0.5)
    a = first.submit("search", dict(target="mnist4:mnist-digit0", space="standard", preset="smoke", budget=budget))
    b = second.submit("search", dict(target="mnist4:mnist-digit6", space="standard", preset="smoke", budget=budget))
    jobs = [first.wait(a, 300), second.wait(b, 300)]
    assert [j.status for j in jobs] == ["done", "done"], [j.error for j in jobs]
    runs = [workspace.get_result("search", j.info["run_id"])[0] for j in jobs]
    assert [r["target"] for r in runs] == ["mnist-digit0", "mnist-digit6"]
    assert runs[0]["run_id"] != runs[1]["run_id"]
    for run in runs:
        events = workspace.read_events(f"search:{run['run_id']}")
        assert events[-1]["type"] == "finished" and len({e["seq"] for e in events}) == len(events)


def test_closest_tasks_respect_the_chosen_baselines(populated):
    from tanas_core.nas import ClosestSettings, closest_tasks
    from tanas_core.training import get_preset

    workspace, suite, result = populated
    target = suite.task("mnist-10class")
    settings = dict(archs=("vgg16",), fisher=FisherConfig(**SMALL_FISHER))
    everyone = closest_tasks(workspace, suite, target, get_preset("smoke"), ClosestSettings(**settings, top=3))
    assert [row["baseline"] for row in everyone] == [row["baseline"] for row in result.closest(target.name, 3)]
    last = everyone[-1]["baseline"]
    chosen = closest_tasks(workspace, suite, target, get_preset("smoke"),
                           ClosestSettings(**settings, baselines=(last,)))
    assert [row["baseline"] for row in chosen] == [last]
    with pytest.raises(ValueError, match="not tasks of suite"):
        closest_tasks(workspace, suite, target, get_preset("smoke"), ClosestSettings(**settings, baselines=("nope",)))
    with pytest.raises(ValueError, match="other than the target"):
        closest_tasks(workspace, suite, target, get_preset("smoke"),
                      ClosestSettings(**settings, baselines=("mnist-10class",)))
