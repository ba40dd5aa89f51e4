"""Workspace store and zoo: reuse, atomic writes, crash between file and row, corrupt checkpoints."""
from __future__ import annotations

import sqlite3

import pytest
import torch

from tanas_core.data.suites import get_suite
from tanas_core.requests import DistanceRequest, FisherConfig, ZooRequest
from tanas_core.training import zoo as zoo_module
from tanas_core.training.checkpoints import load_network, verify_checkpoint
from tanas_core.training.zoo import ensure_network, network_key, train_zoo
from tanas_core.workspace.context import RunContext, quiet_context
from tanas_core.workspace.store import CorruptArtifactError, Workspace


@pytest.fixture
def mnist4(real_data):
    return get_suite("mnist4")


def test_workspace_is_sqlite_in_wal_mode(workspace):
    with sqlite3.connect(workspace.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tasks", "networks", "meta"} <= tables


def test_workspace_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        Workspace(target)


def test_same_configuration_is_reused_not_retrained(workspace, mnist4, tiny_preset, monkeypatch):
    task = mnist4.task("mnist-digit0")
    first, status = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "vgg16", tiny_preset, 0)
    assert status == "trained" and (workspace.root / first.checkpoint).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a stored network was trained again")

    monkeypatch.setattr(zoo_module, "train_network", no_training)
    again, status = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "vgg16", tiny_preset, 0)
    assert status == "reused" and again.key == first.key and again.sha256 == first.sha256
    # A different seed is a different network.
    assert network_key(mnist4, task, "vgg16", tiny_preset, 1) != first.key


def test_crash_between_file_and_row_leaves_nothing_trusted(workspace, mnist4, tiny_preset, monkeypatch):
    task = mnist4.task("mnist-digit6")

    def crash(record):
        raise KeyboardInterrupt("killed after the checkpoint was written, before its row")

    with monkeypatch.context() as patch:
        patch.setattr(workspace, "record_network", crash)
        with pytest.raises(KeyboardInterrupt):
            ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "resnet18", tiny_preset, 0)
    key = network_key(mnist4, task, "resnet18", tiny_preset, 0)
    assert list(workspace.artifact_path("networks", key).parent.glob(f"{key}-*.safetensors"))  # the file made it ...
    assert workspace.find_network(key) is None  # ... but without a row it is not trusted
    assert workspace.list_networks() == []
    record, status = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "resnet18", tiny_preset, 0)
    assert status == "trained" and workspace.find_network(key) == record
    assert not list(workspace.artifact_path("networks", key).parent.glob("*.tmp"))  # no temp files left behind


def test_failed_write_leaves_no_partial_file(workspace, monkeypatch):
    import tanas_core.workspace.store as store

    def failing_save(tensors, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save_file", failing_save)
    with pytest.raises(ValueError, match="No space left on device.*earlier results are untouched"):
        workspace.write_tensors("networks", "abc", {"w": torch.zeros(3)})
    assert not any(workspace.artifact_path("networks", "abc").parent.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupt_checkpoint_detected_reported_and_rebuilt(workspace, mnist4, tiny_preset, damage):
    task = mnist4.task("mnist-digit0")
    record, _ = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "vgg16", tiny_preset, 0)
    path = workspace.root / record.checkpoint
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        raw[len(raw) - 10] ^= 0xFF
        path.write_bytes(raw)
    else:
        path.unlink()
    with pytest.raises(CorruptArtifactError, match="Fix: `python -m tanas_core zoo train --suite mnist4"):
        load_network(workspace, record)
    rebuilt, status = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "vgg16", tiny_preset, 0)
    assert status == "rebuilt-corrupt"
    verify_checkpoint(workspace, rebuilt)  # intact again
    assert load_network(workspace, rebuilt).head.out_features == 2


def test_checkpoint_of_another_architecture_is_refused(workspace, mnist4, tiny_preset):
    record, _ = ensure_network(quiet_context(workspace, "cpu"), mnist4, mnist4.task("mnist-digit0"), "vgg16",
                               tiny_preset, 0)
    record.arch = "resnet18"
    with pytest.raises(ValueError, match="does not fit a resnet18"):
        load_network(workspace, record)


def test_not_a_safetensors_file_is_refused(workspace):
    ref = workspace.write_tensors("networks", "real", {"w": torch.ones(2)})
    path = workspace.root / ref.path
    import pickle
    path.write_bytes(pickle.dumps({"w": [1.0, 1.0]}))
    from tanas_core.workspace.store import ArtifactRef, sha256_file
    with pytest.raises(CorruptArtifactError, match="not a valid safetensors"):
        workspace.read_tensors(ArtifactRef(ref.path, sha256_file(path)))


def test_loaded_network_reproduces_trained_accuracy(workspace, mnist4, tiny_preset):
    from tanas_core.data.tasks import make_splits
    from tanas_core.training.trainer import evaluate

    task = mnist4.task("mnist-digit0")
    record, _ = ensure_network(quiet_context(workspace, "cpu"), mnist4, task, "resnet18", tiny_preset, 0)
    model = load_network(workspace, record)
    splits = make_splits(task, tiny_preset.sizes, 0, mnist4.spec)
    assert evaluate(model, *splits.tensors("test"), device="cpu") == pytest.approx(record.test_accuracy)


def test_train_zoo_covers_tasks_archs_seeds_and_reports_events(workspace, mnist4, tiny_preset):
    events, fractions = [], []
    context = RunContext(workspace, "cpu", on_event=events.append, on_progress=lambda m, f: fractions.append(f))
    records = train_zoo(ZooRequest(suite="mnist4", archs=("vgg16", "densenet121"), seeds=2, preset="tiny",
                                   tasks=("mnist-digit0",)), context)
    assert {(r.arch, r.seed) for r in records} == {("vgg16", 0), ("vgg16", 1), ("densenet121", 0),
                                                   ("densenet121", 1)}
    assert [e.status for e in events if e.status != "training"] == ["trained"] * 4
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 8  # step-level, monotone
    assert len(workspace.list_networks(suite="mnist4")) == 4
    with pytest.raises(ValueError, match="unknown architecture"):
        train_zoo(ZooRequest(suite="mnist4", archs=("vgg17",), preset="tiny"), context)


def test_parallel_workers_store_every_network_once(workspace, mnist4, tiny_preset):
    records = train_zoo(ZooRequest(suite="mnist4", archs=("vgg16", "resnet18"), preset="tiny",
                                   tasks=("mnist-digit0", "mnist-digit6"), workers=2), quiet_context(workspace, "cpu"))
    assert [(r.task, r.arch) for r in records] == [("mnist-digit0", "vgg16"), ("mnist-digit0", "resnet18"),
                                                  ("mnist-digit6", "vgg16"), ("mnist-digit6", "resnet18")]
    stored = workspace.list_networks()
    assert len(stored) == 4 and {r.key for r in stored} == {r.key for r in records}
    for record in stored:
        verify_checkpoint(workspace, record)


def test_probe_networks_train_in_the_zoos_worker_processes_as_here_and_the_probe_view_reuses_them(
        workspace, mnist4, tiny_preset):
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.training.checkpoints import PROBE_TASK
    from tanas_core.training.probe_network import train_probe_network
    from tanas_core.training.zoo import ZooEvent

    request = ZooRequest(suite="mnist4", archs=("vgg16",), preset="tiny", tasks=("mnist-digit0",), replicates=1,
                         workers=2, networks="both")
    records = train_zoo(request, quiet_context(workspace, "cpu"))
    assert [(r.task, r.replicate) for r in records] == [("mnist-digit0", 0), ("mnist-digit0", 1), (PROBE_TASK, 0),
                                                       (PROBE_TASK, 1)]
    assert {r.task for r in workspace.list_networks()} == {"mnist-digit0"}  # probe networks are results, not rows
    probe, twin = records[2:]
    assert workspace.get_result("probe_network", probe.key) is not None and probe.key != twin.key
    # a worker process runs one torch thread (2 workers, 2 cores): with one thread here, the same weights bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = train_probe_network(mnist4, "vgg16", tiny_preset, 0, "cpu").model.state_dict()
    finally:
        torch.set_num_threads(threads)
    stored = verify_checkpoint(workspace, probe)
    assert stored.keys() == here.keys() and all(torch.equal(stored[name], here[name]) for name in here)
    assert not torch.equal(verify_checkpoint(workspace, twin)["head.weight"], stored["head.weight"])

    events = []
    distance_matrices(DistanceRequest(suite="mnist4", archs=("vgg16",), seeds=1, preset="tiny", view="probe",
                                      fisher=FisherConfig(samples=16, head_samples=32)),
                      RunContext(workspace, "cpu", on_event=events.append))
    finished = [(e.task, e.status) for e in events if isinstance(e, ZooEvent) and e.status != "training"]
    assert finished == [(PROBE_TASK, "reused")]


def test_distance_matrices_cached_asymmetric_with_noise_floor(workspace, mnist4, tiny_preset):
    from tanas_core.distances.matrices import across_architectures, distance_matrices

    request = DistanceRequest(suite="mnist4", archs=("vgg16",), seeds=2, metric="frechet", preset="tiny",
                              view="tanas", fisher=FisherConfig(samples=16, head_samples=32))
    [result] = distance_matrices(request, quiet_context(workspace, "cpu"))
    assert result.matrices.shape == (2, 4, 4) and not result.cached
    assert (result.matrices[:, range(4), range(4)] == 0).all()
    assert ((result.matrices >= 0) & (result.matrices <= 1)).all()
    assert not (abs(result.mean - result.mean.T) < 1e-9).all()  # asymmetric on real tasks
    assert result.noise_floor.shape == (4,) and (result.noise_floor > 0).all()
    ranked = result.closest("mnist-10class", 3)
    assert [r["distance"] for r in ranked] == sorted(r["distance"] for r in ranked)
    [again] = distance_matrices(request, quiet_context(workspace, "cpu"))
    assert again.cached and (again.matrices == result.matrices).all()
    combined = across_architectures([result, again])
    assert combined.matrices.shape == (4, 4, 4)
    with pytest.raises(ValueError, match="metric must be one of"):
        DistanceRequest(suite="mnist4", metric="euclid").validate()


def test_two_writers_of_one_key_leave_a_row_that_names_its_own_file(workspace):
    # Two processes training one network at once (the soak's second client) wrote one file name with bytes that
    # differed in the last bits; the row of one and the file of the other made a "corrupt" checkpoint.
    first = workspace.write_tensors("fisher", "same", {"fisher": torch.zeros(4)})
    second = workspace.write_tensors("fisher", "same", {"fisher": torch.ones(4)})
    assert first.path != second.path and (workspace.root / first.path).is_file()
    workspace.put_result("fisher", "same", {"n": 2}, second)
    workspace.put_result("fisher", "same", {"n": 1}, first)  # rows land in the other order
    payload, ref = workspace.get_result("fisher", "same")
    assert payload == {"n": 1} and torch.equal(workspace.read_tensors(ref)["fisher"], torch.zeros(4))
    assert not (workspace.root / second.path).exists()  # the superseded file is gone once no row names it
    again = workspace.write_tensors("fisher", "same", {"fisher": torch.zeros(4)})
    assert again == first  # the same bytes: the same file, still named by the row
    workspace.put_result("fisher", "same", {"n": 1}, again)
    assert torch.equal(workspace.read_tensors(again)["fisher"], torch.zeros(4))
