"""The app's pages in-process (AppTest) on empty and populated real workspaces, and the background jobs."""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, SMALL_FISHER
from tanas_core.data.suites import get_suite
from tanas_core.errors import TanasError
from tanas_core.jobs.kinds import JOB_KINDS
from tanas_core.jobs.runner import JobRunner, get_job, list_jobs
from tanas_core.requests import ClosestSettings, FisherConfig, SearchRequest
from tanas_core.search.nas import closest_tasks, get_search, search_events
from tanas_core.workspace.context import quiet_context
from tanas_core.workspace.store import Workspace

PAGES = ["app.py", "app_pages/1_Tasks.py", "app_pages/2_Zoo.py", "app_pages/3_Distances.py", "app_pages/4_Search.py",
         "app_pages/5_Lesson.py"]


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
    app = AppTest.from_file(str(REPO / "app_pages/3_Distances.py"), default_timeout=120).run()
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
    layout = next(spec["layout"] for spec in specs if any(t["type"] == "heatmap" for t in spec["data"]))
    assert layout["xaxis"]["ticktext"] == result.tasks and layout["yaxis"]["ticktext"] == result.tasks
    assert np.allclose(np.asarray(shown, dtype=float), result.mean)
    assert any(trace.get("name") == "closest baseline" for spec in specs for trace in spec["data"])
    assert app.get("download_button")


def test_distances_page_reports_bad_input_with_st_error(populated):
    workspace, _, _ = populated
    app = AppTest.from_file(str(REPO / "app_pages/3_Distances.py"), default_timeout=120).run()
    by_label(app.selectbox, "Metric").set_value("logdet").run()
    by_label(app.number_input, "σ (log-det)").set_value(-1.0).run()
    assert not app.exception
    # the error names the input on screen, not the request's field
    assert any("“σ (log-det)” must be in 1e-12..1e+06" in e.value for e in app.error), [e.value for e in app.error]
    assert list_jobs(workspace) == []


def test_custom_task_form_validates_and_saves(real_data):
    app = run_page("app_pages/1_Tasks.py")
    name, groups = by_label(app.text_input, "Name"), by_label(app.text_area, "Groups (one per line)")
    save = by_label(app.button, "Save the task")
    name.set_value("bad task name!")
    groups.set_value("0, 1\n2")
    save.click().run()
    assert not app.exception
    assert any("must be 1-64 characters" in e.value for e in app.error)
    name.set_value("overlap")
    groups.set_value("0, 1\n1, 2")
    save.click().run()
    assert any("appears" in e.value or "twice" in e.value for e in app.error), [e.value for e in app.error]
    name.set_value("low-vs-high")
    groups.set_value("0, 1, 2, 3, 4\n5, 6, 7, 8, 9")
    save.click().run()
    assert not app.error and app.success
    assert [t.name for t in Workspace().load_tasks()] == ["low-vs-high"]
    assert len(app.image) == 2  # dataset grid + the new task's per-output preview


def test_search_page_launches_a_fuse_job_and_the_alpha_chart_gets_data(real_data):
    app = run_page("app_pages/4_Search.py")
    by_label(app.selectbox, "Suite").set_value("mnist4").run()
    by_label(app.selectbox, "Preset").set_value("smoke").run()
    by_label(app.radio, "Space").set_value("standard")
    values = {"FUSE candidates C": 2, "FUSE rounds": 1, "epochs per round": 1.0, "final training epochs": 1.0}
    for widget in app.number_input:
        if widget.label in values:
            widget.set_value(values[widget.label])
    by_label(app.button, "Start the search").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    workspace = Workspace()
    jobs = list_jobs(workspace, "search")
    assert len(jobs) == 1
    request = SearchRequest.from_dict(jobs[0].request)
    assert (request.space, request.target, request.preset) == ("standard", "mnist4:mnist-10class", "smoke")
    assert (request.budget.candidates, request.budget.rounds, request.budget.final_epochs) == (2, 1, 1.0)
    wait_for(workspace, jobs[0].id)
    assert get_job(workspace, jobs[0].id).status == "done", get_job(workspace, jobs[0].id).error
    app.run()
    specs = plotly_specs(app)
    alpha = [spec for spec in specs if "softmax" in json.dumps(spec.get("layout", {}).get("title", ""))]
    assert alpha and len(alpha[0]["data"]) == 2 and len(alpha[0]["data"][0]["x"]) >= 1
    assert app.success  # the winner's test accuracy
    # and whether FUSE's last round chose beyond the validation noise (a 1-epoch smoke round may well tie)
    notes = [n.value for n in [*app.info, *app.warning] if n.value.startswith("FUSE's last round: ")]
    assert len(notes) == 1 and "runner-up" in notes[0], notes


def test_jobs_record_failures_cancel_and_interrupted_restarts(real_data):
    workspace = Workspace()
    runner = JobRunner(workspace, JOB_KINDS)
    with pytest.raises(TanasError, match="no-such-task"):  # refused before a job is launched
        runner.submit("search", dict(target="mnist4:no-such-task"))
    assert list_jobs(workspace) == []
    with pytest.raises(TanasError, match="unknown job kind"):
        runner.submit("mine-bitcoin", {})

    # cancel: a search stops between steps and keeps its partial history
    job = runner.submit("search", dict(target="mnist4:mnist-digit0", space="standard", preset="smoke",
                                       budget=dict(candidates=2, rounds=5, epochs_per_round=5)))
    deadline = time.monotonic() + 120
    while not get_job(workspace, job).info.get("run_id") and time.monotonic() < deadline:
        time.sleep(0.2)
    runner.cancel(job)
    final = runner.wait(job, 120)
    assert final.status == "cancelled", final.error
    run = get_search(workspace, final.info["run_id"])
    assert run is not None and run.status != "done" and search_events(workspace, final.info["run_id"])

    # a job whose process died is marked interrupted by the next runner, and can be relaunched
    dead_owner = f"{os.uname().nodename}:999999"  # this host, a process id that does not exist
    params = dict(request=dict(suite="mnist4", archs=["vgg16"], seeds=1, preset="smoke", tasks=["mnist-digit0"]),
                  run=dict(backend="local"))
    with workspace.connect() as conn:
        conn.execute("INSERT INTO jobs VALUES ('zoo-dead', 'zoo', ?, 'running', 0.4, 'training', NULL, NULL, '{}', "
                     "?, 0, 0, 0)", (json.dumps(params), dead_owner))
    JobRunner(workspace, JOB_KINDS)  # what a server restart does: a new runner recovers lost jobs
    assert get_job(workspace, "zoo-dead").status == "interrupted"
    relaunched = runner.relaunch("zoo-dead")
    assert runner.wait(relaunched, 120).status == "done"


def test_two_users_jobs_get_separate_results(real_data):
    workspace = Workspace()
    first, second = JobRunner(workspace, JOB_KINDS), JobRunner(Workspace(workspace.root), JOB_KINDS)
    budget = dict(candidates=2, rounds=1, epochs_per_round=1, final_epochs=1.0)
    a = first.submit("search", dict(target="mnist4:mnist-digit0", space="standard", preset="smoke", budget=budget))
    b = second.submit("search", dict(target="mnist4:mnist-digit6", space="standard", preset="smoke", budget=budget))
    jobs = [first.wait(a, 300), second.wait(b, 300)]
    assert [j.status for j in jobs] == ["done", "done"], [j.error for j in jobs]
    runs = [get_search(workspace, j.info["run_id"]) for j in jobs]
    assert [r.target for r in runs] == ["mnist-digit0", "mnist-digit6"]
    assert runs[0].run_id != runs[1].run_id
    for run in runs:
        events = search_events(workspace, run.run_id)
        assert events[-1]["type"] == "finished" and len({e["seq"] for e in events}) == len(events)


def test_closest_tasks_respect_the_chosen_baselines(populated):
    workspace, suite, result = populated
    context = quiet_context(workspace, "cpu")

    def search(**closest) -> SearchRequest:
        settings = ClosestSettings(archs=("vgg16",), fisher=FisherConfig(**SMALL_FISHER), **closest)
        return SearchRequest(target="mnist4:mnist-10class", preset="smoke", closest=settings)

    everyone = closest_tasks(search(top=3), context)
    assert [row["baseline"] for row in everyone] == [row["baseline"] for row in result.closest("mnist-10class", 3)]
    last = everyone[-1]["baseline"]
    chosen = closest_tasks(search(baselines=(last,)), context)
    assert [row["baseline"] for row in chosen] == [last]
    with pytest.raises(TanasError, match="nope"):  # what every front-end does before running the request
        search(baselines=("nope",)).validate(workspace)
    with pytest.raises(TanasError, match="other than the target"):
        closest_tasks(search(baselines=("mnist-10class",)), context)


def test_distances_page_shows_a_committed_report_as_the_docs_do_with_its_transfer_matrix(real_data):
    """A real report (the frozen default on ``mnist_new4``, three architectures, fine-tuning transfer) stored in a
    workspace reads on the Distances page as it reads in docs/results/fair-trial.md: the verdict, each figure's cell
    with its range, and the transfer gains (the architectures' mean) beside them."""
    name = "trial-mnist_new4-epsilon-avg.json"
    report = json.loads((REPO / "docs/results" / name).read_text())
    Workspace().put_result("validation", "committed-report", report)
    app = AppTest.from_file(str(REPO / "app_pages/3_Distances.py"), default_timeout=120).run()
    by_label(app.selectbox, "Suite").set_value(report["suite"])
    by_label(app.selectbox, "Preset").set_value(report["preset"])
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    row = "probe:frechet"
    assert any(f"Separates these tasks from noise ({row}): yes, not settled" in info.value for info in app.info)

    # the docs' table of this report (generated by `validate table`): header and the default row's cells
    lines = (REPO / "docs/results/fair-trial.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if f"(from `docs/results/{name}`)" in line)
    table = [line for line in lines[start:] if line.startswith("| ")]
    headers = [cell.strip() for cell in table[0].strip("|").split("|")]
    documented = next(dict(zip(headers, (c.strip() for c in line.strip("|").split("|"))))
                      for line in table if line.startswith(f"| {row} |"))
    shown_cells = {}
    for frame in (element.value for element in app.dataframe):
        if "row" in frame.columns and row in set(frame["row"]):
            shown_cells.update(frame[frame["row"] == row].iloc[0].to_dict())
    for header in ("identity test", "signal / noise (within a dataset)", "transfer rank correlation",
                   "closest is best source", "verdict"):
        assert shown_cells[header] == documented[header], header

    transfer = [(spec["layout"], trace) for spec in plotly_specs(app) for trace in spec["data"]
                if trace["type"] == "heatmap" and "transfer gain" in spec["layout"]["title"]["text"]]
    assert len(transfer) == 2  # under the verdict of the chosen view and of the other view's tab
    gains = np.mean([np.asarray(matrix) for matrix in report["transfer"]["gains"].values()], axis=0)
    for layout, trace in transfer:
        assert layout["xaxis"]["ticktext"] == report["transfer"]["tasks"]
        assert np.allclose(np.asarray(trace["z"], dtype=float), gains)
