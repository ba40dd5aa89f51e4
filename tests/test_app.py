"""The Streamlit home page, run in-process with AppTest against a real (temporary) workspace."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO


def run_home() -> AppTest:
    """The home page, rerun until its background dataset check has filled the table (first visit: seconds)."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    deadline = time.monotonic() + 120
    while not any("dataset" in frame.value.columns for frame in app.dataframe):
        assert time.monotonic() < deadline, "the dataset table never appeared"
        time.sleep(0.5)
        app.run()
    return app


def test_home_page_renders_datasets_and_empty_workspace(real_data):
    from tanas_core.requests import DemoRequest

    app = run_home()
    assert not app.exception
    assert app.title[0].value == "TA-NAS Studio"
    demo = DemoRequest()
    assert any(f"`{demo.suite}` suite" in m.value and f"`{demo.target}`" in m.value for m in app.markdown)
    datasets = app.dataframe[0].value
    assert set(datasets["dataset"]) >= {"mnist", "cifar10", "cifar100", "quickdraw"}
    assert bool(datasets.set_index("dataset").loc["mnist", "available"])
    assert [m.value for m in app.metric] == ["0", "0"]
    assert len(app.image) == 1  # the pipeline diagram from assets/


def test_home_page_lists_trained_networks(real_data):
    from tanas_core.requests import ZooRequest
    from tanas_core.training.zoo import train_zoo
    from tanas_core.workspace.context import quiet_context
    from tanas_core.workspace.store import Workspace

    request = ZooRequest(suite="mnist4", archs=("vgg16",), seeds=1, preset="smoke", tasks=("mnist-digit0",))
    train_zoo(request, quiet_context(Workspace(), "cpu"))
    app = run_home()
    assert not app.exception
    assert app.metric[0].value == "1"
    assert list(app.dataframe[1].value["task"]) == ["mnist-digit0"]


def test_tasks_page_shows_sample_grid_and_suites(real_data):
    app = AppTest.from_file(str(REPO / "app_pages" / "1_Tasks.py"), default_timeout=60).run()
    assert not app.exception
    assert app.selectbox[0].value == "mnist"
    assert len(app.image) == 1
    expanders = [e.label for e in app.expander]
    assert any(label.startswith("ld8") for label in expanders)
    assert any(label.startswith("cifar100_4") and "unavailable" in label for label in expanders) or (
        real_data / "cifar-100-python").exists()


def test_sample_grid_rows_are_classes(real_data):
    from tanas_core.data.datasets import load_dataset, sample_grid

    mnist = load_dataset("mnist")
    sheet = sample_grid(mnist, per_class=3, classes=[0, 7])
    assert sheet.shape == (56, 84, 1)
    zeros, sevens = mnist.x_train[mnist.y_train == 0], mnist.x_train[mnist.y_train == 7]
    assert (zeros == sheet[None, :28, :28]).all(axis=(1, 2, 3)).any()  # row 0 holds a real digit 0
    assert (sevens == sheet[None, 28:, 28:56]).all(axis=(1, 2, 3)).any()  # row 1 holds a real digit 7


@pytest.mark.integration
def test_rendering_the_search_page_and_leaving_the_interpreter_exits_cleanly(real_data, tmp_path):
    """Issue 27: the page's background step measurement (torch work in a thread) is finished before the interpreter
    ends, instead of being torn down mid-operation (exit 134, "terminate called without an active exception")."""
    script = ("from streamlit.testing.v1 import AppTest; import sys; "
              f"app = AppTest.from_file({str(REPO / 'app_pages/4_Search.py')!r}, default_timeout=120).run(); "
              "sys.exit(1 if app.exception else 0)")
    env = dict(os.environ, TANAS_HOME=str(tmp_path / "home"), TANAS_DATA_DIR=str(real_data))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
