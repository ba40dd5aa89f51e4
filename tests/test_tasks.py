"""Tasks: validation, the source document's suites, deterministic class-balanced splits."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tanas_core.data.suites import get_suite, suite_availability
from tanas_core.data.tasks import SplitSizes, Task, make_splits, make_task


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=[]), "non-empty list"),
    (dict(groups=[[]]), "group 1 is empty"),
    (dict(groups=[["0"], ["0", "1"]]), "appears in groups 1 and 2"),
    (dict(groups=[["0", "0"], ["1"]]), "appears twice in group 1"),
    (dict(groups=[["zero"], ["1"]]), "class 'zero' does not exist in mnist"),
    (dict(groups=[[12], ["1"]]), "label 12 does not exist"),
    (dict(groups=[["0"]]), "has 1 output; a task needs at least 2"),
    (dict(groups=[[str(d)] for d in range(10)], other=True), "'anything else' would be empty"),
    (dict(groups=[["0"]], other=True, other_classes=["0", "1"]), "in a group and in 'anything else'"),
    (dict(groups=[["0"]], other_classes=["1"]), "'other' \\(anything else\\) is off"),
    (dict(groups=[["0"], ["1"]], labels=["a"]), "1 labels for 2 groups"),
])
@pytest.mark.unit
def test_invalid_tasks_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_task("t", "mnist", **kwargs)


@pytest.mark.unit
def test_invalid_names_and_datasets():
    with pytest.raises(ValueError, match="task name '../evil'"):
        make_task("../evil", "mnist", [["0"], ["1"]])
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        make_task("t", "svhn", [["0"], ["1"]])
    with pytest.raises(ValueError, match="unknown task field"):
        Task.from_dict({"name": "t", "dataset": "mnist", "groups": [["0"], ["1"]], "extra": 1})
    with pytest.raises(ValueError, match="needs a 'groups' field"):
        Task.from_dict({"name": "t", "dataset": "mnist"})


@pytest.mark.unit
def test_task_outputs_labels_and_json_round_trip():
    task = make_task("odd", "mnist", [[1, 3, 5, 7, 9], [0, 2, 4, 6, 8]], labels=["odd", "even"])
    assert task.groups[0] == ("1", "3", "5", "7", "9") and task.output_names == ["odd", "even"]
    again = Task.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again == task and again.fingerprint() == task.fingerprint()
    detector = make_task("zero", "mnist", [["0"]], other=True)
    assert detector.num_outputs == 2 and detector.label_map(tuple(str(d) for d in range(10))).tolist() == [
        0, 1, 1, 1, 1, 1, 1, 1, 1, 1]


@pytest.mark.unit
def test_source_document_suites():
    ld8 = get_suite("ld8")
    assert [t.num_outputs for t in ld8.tasks] == [2, 2, 2, 10, 2, 2, 4, 10]
    assert ld8.tasks[4].groups == (("automobile", "cat", "ship"),) and ld8.tasks[4].other
    assert ld8.tasks[5].groups == (("cat", "ship", "truck"),)
    assert ld8.tasks[6].output_names == ["bird", "frog", "horse", "anything else"]
    assert ld8.spec.channels == 3 and ld8.spec.size == 32  # mixed MNIST + CIFAR: grayscale becomes RGB 32x32
    assert get_suite("mnist4").spec.channels == 1
    assert [t.num_outputs for t in get_suite("mnist4").tasks] == [2, 2, 5, 10]
    assert [t.num_outputs for t in get_suite("cifar10_4").tasks] == [2, 2, 4, 10]
    c100 = get_suite("cifar100_4")
    assert [t.num_outputs for t in c100.tasks] == [2, 2, 11, 21]
    assert set(c100.tasks[0].groups[0]) == {"bicycle", "bus", "motorcycle", "pickup_truck", "train", "lawn_mower",
                                            "rocket", "streetcar", "tank", "tractor"}
    assert set(c100.tasks[1].groups[0]) >= {"clock", "lamp", "bed", "wardrobe"} and len(c100.tasks[1].groups[0]) == 10
    with pytest.raises(ValueError, match="unknown suite"):
        get_suite("imagenet10")


def test_quickdraw_suite_and_cifar100_availability(real_data):
    suite = get_suite("quickdraw")
    moon = suite.task("quickdraw-moon")
    assert moon.groups == (("moon",),) and len(moon.other_classes) == 9
    assert [t.name for t in suite.tasks[1:]] == ["mnist-digit0", "fashion-trouser", "mnist-digit3"]
    ok, reason = suite_availability("ld8")
    assert ok and reason == ""
    if not (real_data / "cifar-100-python").exists():
        ok, reason = suite_availability("cifar100_4")
        assert not ok and "cifar100" in reason


def test_splits_are_deterministic_balanced_and_disjoint(real_data):
    task = get_suite("ld8").task("cifar10-bird-frog-horse-else")
    sizes = SplitSizes(train=800, val=200, test=400)
    a, b, c = make_splits(task, sizes, 0), make_splits(task, sizes, 0), make_splits(task, sizes, 1)
    for split in ("train", "val", "test"):
        assert np.array_equal(a.indices[split], b.indices[split])
    assert not np.array_equal(np.sort(a.indices["train"]), np.sort(c.indices["train"]))
    assert np.array_equal(np.sort(a.indices["test"]), np.sort(c.indices["test"]))  # test never moves with the seed
    assert a.counts() == {"val": [50] * 4, "train": [200] * 4, "test": [100] * 4}
    assert not set(a.indices["train"]) & set(a.indices["val"])
    # "anything else" spreads over its 7 source classes as evenly as possible.
    source = a.dataset.y_train[a.indices["train"][a.labels["train"] == 3]]
    per_class = np.bincount(source, minlength=10)[[0, 1, 3, 4, 5, 8, 9]]
    assert per_class.max() - per_class.min() <= 1
    images, labels = a.tensors("train")
    assert images.shape == (800, 3, 32, 32) and labels.tolist() == a.labels["train"].tolist()


def test_scarce_data_shrinks_splits_but_keeps_balance(real_data):
    moon = get_suite("quickdraw").task("quickdraw-moon")
    splits = make_splits(moon, SplitSizes(train=2000, val=500, test=1000), 0)
    counts = splits.counts()
    assert counts["train"][0] == counts["train"][1] > 0 and counts["val"][0] == counts["val"][1] > 0
    # all 80 training drawings of "moon" but its 16 held-out probe images (20 %), none twice
    assert counts["train"][0] + counts["val"][0] == 64
    assert len(set(splits.indices["train"]) | set(splits.indices["val"])) == len(splits.indices["train"]) + len(
        splits.indices["val"])


@pytest.mark.unit
def test_custom_task_saved_in_workspace(workspace):
    task = make_task("fives", "mnist", [["5"]], other=True, description="detect 5")
    workspace.save_task(task)
    assert workspace.load_tasks() == [task]



def test_the_held_out_suites_are_groupings_that_no_other_suite_has(real_data):
    """Issue 25: each held-out suite's tasks are in no other suite, held out or not (the second freeze's suites are
    new beside the first's too; Quick, Draw!'s suites read their categories from the pack, hence the real data)."""
    from tanas_core.data.suites import HELD_OUT_SUITES, SUITE_NAMES, get_suite

    assert {"mnist_r2", "fashion_r2", "cifar10_r2"} <= set(HELD_OUT_SUITES)
    fingerprints = {name: [task.fingerprint() for task in get_suite(name).tasks] for name in SUITE_NAMES}
    for name in HELD_OUT_SUITES:
        others = {print_ for other, prints in fingerprints.items() if other != name for print_ in prints}
        assert len(fingerprints[name]) >= 4
        for task, print_ in zip(get_suite(name).tasks, fingerprints[name]):
            assert print_ not in others, (name, task.name)


def test_every_held_out_task_holds_the_fisher_images_the_default_report_needs(real_data):
    """The default report runs on the held-out suites: every task passes the report's probe check, and the suites
    of the first freeze hold M held-out probe images and, for the probe view's data draws, M test images (Quick,
    Draw!'s 100 drawings per category give ``quickdraw6`` fewer, 256-640: M is the most a Fisher uses)."""
    from tanas_core.data.probe_images import probe_capacity, probe_count
    from tanas_core.data.suites import HELD_OUT_SUITES, get_suite
    from tanas_core.requests import FisherConfig
    from tanas_core.workspace.checks import check_probe

    for name in HELD_OUT_SUITES:
        tasks = get_suite(name).tasks
        check_probe(FisherConfig(), tasks)
        for task in tasks:
            if name != "quickdraw6":
                assert min(probe_capacity(task), probe_capacity(task, draw=1)) >= FisherConfig().samples, task.name
            else:
                assert 256 <= probe_count(task, FisherConfig().samples) <= 640, task.name


def test_a_custom_task_cannot_take_a_built_in_tasks_name(tmp_path):
    """Issue 26: a custom "mnist-digit0" (1 vs else) was saved beside the built-in one and the zoo listed two rows
    under one name. Names are compared case-insensitively."""
    from tanas_core.data.tasks import make_task
    from tanas_core.errors import TanasError
    from tanas_core.workspace.store import Workspace

    workspace = Workspace(tmp_path / "workspace")
    for name in ("mnist-digit0", "MNIST-Digit0", "fashion-footwear"):
        with pytest.raises(TanasError, match=f"{name!r} is a task of the built-in suite .*choose another"):
            workspace.save_task(make_task(name, "mnist", [["1"]], other=True))
    assert workspace.load_tasks() == []
    workspace.save_task(make_task("mnist-one", "mnist", [["1"]], other=True))
    assert [task.name for task in workspace.load_tasks()] == ["mnist-one"]


def test_class_names_match_case_insensitively_and_are_stored_as_the_dataset_spells_them():
    """Issue 26: the suite tables print "trouser" while Fashion-MNIST spells "Trouser"; typing either works, and the
    task (and so its fingerprint and the networks trained on it) is the same."""
    from tanas_core.data.tasks import make_task
    from tanas_core.errors import TanasError

    typed = make_task("fashion-mine", "fashion_mnist", [["trouser"], [" BAG "]], other=True)
    spelled = make_task("fashion-mine", "fashion_mnist", [["Trouser"], ["Bag"]], other=True)
    assert typed.groups == (("Trouser",), ("Bag",)) and typed.fingerprint() == spelled.fingerprint()
    with pytest.raises(TanasError, match="class 'trousers' does not exist in fashion_mnist"):
        make_task("fashion-mine", "fashion_mnist", [["trousers"]], other=True)
