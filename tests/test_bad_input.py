"""Bad input across library and CLI, each answered with a clear error; property tests; security.

`python tests/test_bad_input.py` prints the case table that the README shows (case, where, the message it gets).
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tanas_core.data.suites import get_suite, resolve_target  # noqa: E402
from tanas_core.data.tasks import SplitSizes, make_splits, make_task  # noqa: E402
from tanas_core.distances.metrics import frechet_distance, logdet_distance  # noqa: E402
from tanas_core.jobs.kinds import JOB_KINDS  # noqa: E402
from tanas_core.jobs.runner import JobRunner  # noqa: E402
from tanas_core.networks import build_network  # noqa: E402
from tanas_core.networks.devices import resolve_device
from tanas_core.search.fuse import SearchBudget  # noqa: E402
from tanas_core.search.space import OPERATIONS, Genotype  # noqa: E402
from tanas_core.training.trainer import get_preset  # noqa: E402
from tanas_core.workspace.context import quiet_context  # noqa: E402
from tanas_core.workspace.store import ArtifactRef, CorruptArtifactError, Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tanas_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    if done.returncode != 2:
        raise AssertionError(f"exit {done.returncode}, stderr {done.stderr[-500:]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    raise ValueError(lines[0].removeprefix("error: "))


def _file_workspace(tmp: Path):
    target = tmp / "a-file"
    target.write_text("not a directory")
    return Workspace(target)


def _nan_fisher():
    values = torch.rand(10)
    values[3] = float("nan")
    return logdet_distance(values, torch.rand(10), 1e-3)


# (case, where, call(tmp_path), fragment of the message)
CASES = [
    ("unknown dataset", "library", lambda t: make_task("t", "svhn", [["0"], ["1"]]), "unknown dataset 'svhn'"),
    ("unknown class", "library", lambda t: make_task("t", "mnist", [["0"], ["eleven"]]),
     "class 'eleven' does not exist in mnist"),
    ("overlapping groups", "library", lambda t: make_task("t", "mnist", [["0", "1"], ["1", "2"]]),
     "class '1' appears"),
    ("one-class task", "library", lambda t: make_task("t", "mnist", [["0", "1"]]), "a task needs at least 2"),
    ("empty group", "library", lambda t: make_task("t", "mnist", [["0"], []]), "group 2 is empty"),
    ("task name with a path", "library", lambda t: make_task("../evil", "mnist", [["0"], ["1"]]),
     "must be 1-64 characters"),
    ("tiny split", "library", lambda t: make_splits(make_task("t", "mnist", [["0"], ["1"], ["2"]]),
                                                    SplitSizes(train=2, val=1, test=3), 0),
     "fewer than one training image per output"),
    ("sigma <= 0", "library", lambda t: logdet_distance(torch.rand(10), torch.rand(10), 0.0), "sigma"),
    ("NaN in a Fisher", "library", lambda t: _nan_fisher(), "NaN"),
    ("Frechet of different sizes (architectures)", "library",
     lambda t: frechet_distance(torch.rand(10), torch.rand(12)), "same architecture"),
    ("malformed genotype JSON", "library", lambda t: Genotype.from_json('{"normal": [[['), "not valid JSON"),
    ("genotype with an unknown operation", "library",
     lambda t: Genotype.from_json(json.dumps({"normal": [[["teleport", 0], ["skip_connect", 1]]],
                                              "reduce": [[["skip_connect", 0], ["skip_connect", 1]]]})),
     "unknown operation 'teleport'"),
    ("absurd budget", "library", lambda t: SearchBudget(final_epochs=1e9).validate(), "final_epochs must be in"),
    ("unknown preset", "library", lambda t: get_preset("huge"), "unknown preset 'huge'"),
    ("unknown architecture", "library", lambda t: build_network("vit", 10), "unknown architecture 'vit'"),
    ("unavailable device", "library", lambda t: resolve_device("tpu"), "unknown device 'tpu'"),
    ("target not SUITE:TASK", "library", lambda t: resolve_target("mnist-10class"), "SUITE:TASK"),
    ("workspace path that is a file", "library", _file_workspace, "is a file"),
    ("unknown job kind", "library", lambda t: JobRunner(Workspace(t / "ws"), JOB_KINDS).submit("mine", {}),
     "unknown job kind 'mine'"),
    ("CLI: unknown task", "CLI", lambda t: _cli("search", "--target", "ld8:nope"), "suite 'ld8' has no task 'nope'"),
    ("CLI: budget of zero rounds", "CLI", lambda t: _cli("search", "--target", "ld8:mnist-10class", "--budget",
                                                         "rounds=0"), "rounds must be in 1..100"),
    ("CLI: budget field that does not exist", "CLI",
     lambda t: _cli("compare", "--target", "ld8:mnist-10class", "--budget", "speed=11"), "is not NAME=VALUE"),
    ("CLI: custom task JSON with overlapping groups", "CLI",
     lambda t: _cli("tasks", "add", "--json", '{"name": "x", "dataset": "mnist", "groups": [["0"], ["0"]]}'),
     "appears"),
]


@pytest.mark.parametrize("case, where, call, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(case, where, call, message, tmp_path, real_data):
    with pytest.raises(ValueError) as error:
        call(tmp_path)
    assert message in str(error.value)


# ------------------------------------------------------------------------------------------------ properties

class_names = st.sampled_from([str(d) for d in range(10)] + ["eleven", "", "0 ", "cat"])
task_json = st.fixed_dictionaries({
    "name": st.text(min_size=0, max_size=70),
    "dataset": st.sampled_from(["mnist", "fashion_mnist", "nope"]),
    "groups": st.lists(st.lists(class_names, max_size=4), max_size=5),
    "other": st.one_of(st.booleans(), st.integers(), st.none()),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=task_json)
def test_any_task_definition_is_a_task_or_a_value_error(payload, real_data):
    try:
        task = make_task(payload["name"], payload["dataset"], payload["groups"], other=payload["other"])
    except ValueError as error:
        assert str(error)
    else:
        assert task.num_outputs >= 2 and json.loads(json.dumps(task.to_dict()))["name"] == task.name


edge = st.tuples(st.one_of(st.sampled_from(OPERATIONS), st.text(max_size=8)),
                 st.one_of(st.integers(-2, 7), st.text(max_size=2), st.none(), st.booleans()))
cell = st.lists(st.one_of(st.lists(edge, min_size=0, max_size=3), st.integers(), st.none()), max_size=5)
genotype_json = st.one_of(
    st.text(max_size=40),
    st.builds(lambda n, r, s: json.dumps({"normal": n, "reduce": r, **({"skeleton": s} if s is not None else {})},
                                         default=str),
              cell, cell, st.one_of(st.none(), st.dictionaries(
                  st.sampled_from(["channels", "cells", "reductions", "stem_multiplier", "bogus"]),
                  st.one_of(st.integers(-3, 40), st.lists(st.integers(-2, 5), max_size=3), st.text(max_size=3)),
                  max_size=4))))


@settings(max_examples=300, deadline=None)
@given(text=genotype_json)
def test_any_genotype_json_is_a_genotype_or_a_value_error(text):
    try:
        genotype = Genotype.from_json(text)
    except ValueError as error:
        assert str(error)
    else:
        assert Genotype.from_json(genotype.to_json()) == genotype


# ------------------------------------------------------------------------------------------------ security

def _touch(path: str) -> None:
    Path(path).touch()


class _Exploit:
    """Unpickling it creates ``marker``: what a malicious checkpoint would do with a real payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_a_pickle_disguised_as_a_checkpoint_is_refused_and_not_executed(tmp_path, real_data, tiny_preset):
    from tanas_core.training.checkpoints import load_network
    from tanas_core.training.zoo import ensure_network

    workspace = Workspace(tmp_path / "ws")
    suite = get_suite("mnist4")
    record, _ = ensure_network(quiet_context(workspace, "cpu"), suite, suite.task("mnist-digit0"), "vgg16",
                               tiny_preset, 0)
    marker = tmp_path / "pwned"
    checkpoint = workspace.root / record.checkpoint
    torch.save({"weights": _Exploit(marker)}, checkpoint)  # a pickle, as torch.save writes it
    assert pickle.loads(pickle.dumps(_Exploit(tmp_path / "control"))) is None and (tmp_path / "control").exists()
    (tmp_path / "control").unlink()
    # even with the index rewritten to the pickle's own sha256, it is not loaded
    from tanas_core.workspace.store import sha256_file
    with workspace.connect() as conn:
        conn.execute("UPDATE networks SET sha256 = ? WHERE key = ?", (sha256_file(checkpoint), record.key))
    record = workspace.find_network(record.key)
    with pytest.raises(CorruptArtifactError, match="not a valid safetensors file"):
        load_network(workspace, record)
    assert not marker.exists()


def test_artifact_names_and_index_paths_cannot_escape_the_workspace(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    for kind, key in (("networks", "../../etc/passwd"), ("../x", "key"), ("networks", "a/b"), ("networks", "")):
        with pytest.raises(ValueError, match="letters, digits"):
            workspace.artifact_path(kind, key)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"secret")
    from tanas_core.workspace.store import sha256_file
    for path in ("../outside.safetensors", "artifacts/../../outside.safetensors", str(outside)):
        with pytest.raises(CorruptArtifactError, match="outside the workspace"):
            workspace.read_tensors(ArtifactRef(path, sha256_file(outside)))


def test_an_artifacts_folder_linked_to_another_disk_is_read_and_written_through_the_link(tmp_path):
    # Reading once refused such a folder as "outside the workspace" while writing went through the link, so a
    # command retrained networks whose checkpoints were fine.
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "artifacts").symlink_to(elsewhere, target_is_directory=True)
    workspace = Workspace(tmp_path / "ws")
    ref = workspace.write_tensors("fisher", "key1", {"fisher": torch.arange(4.0)})
    assert (elsewhere / "fisher" / Path(ref.path).name).is_file() and Path(ref.path).name.startswith("key1-")
    assert torch.equal(workspace.read_tensors(ref)["fisher"], torch.arange(4.0))


def test_the_app_binds_localhost_by_default():
    makefile = (REPO / "Makefile").read_text()
    run_line = next(line for line in makefile.splitlines() if "streamlit run app.py" in line)
    assert "--server.address 127.0.0.1" in run_line


if __name__ == "__main__":  # the README's table
    import tempfile

    print("| case | where | message |\n| --- | --- | --- |")
    for case, where, call, _ in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                call(Path(tmp))
            except ValueError as error:
                message = str(error).replace("|", "\\|").replace("\n", " ")
                print(f"| {case} | {where} | {message} |")
            else:
                print(f"| {case} | {where} | NO ERROR |")
