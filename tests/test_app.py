"""The Streamlit home page, run in-process with AppTest against a real (temporary) workspace."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import REPO


def test_home_page_renders_datasets_and_empty_workspace(real_data):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "TA-NAS Studio"
    datasets = app.dataframe[0].value
    assert set(datasets["dataset"]) >= {"mnist", "cifar10", "cifar100", "quickdraw"}
    assert bool(datasets.set_index("dataset").loc["mnist", "available"])
    assert [m.value for m in app.metric] == ["0", "0"]


def test_home_page_lists_trained_networks(real_data, tiny_preset):
    from tanas_core.store import Workspace
    from tanas_core.tasks import get_suite
    from tanas_core.zoo import train_zoo

    suite = get_suite("mnist4")
    train_zoo(Workspace(), suite, ["vgg16"], [0], tiny_preset, device="cpu", tasks=["mnist-digit0"])
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.metric[0].value == "1"
    assert list(app.dataframe[1].value["task"]) == ["mnist-digit0"]
