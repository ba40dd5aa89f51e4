"""The soak benchmark's own parts, and a small soak on real data: two clients on one workspace, worker processes,
every artifact checked at the end."""
from __future__ import annotations

import numpy as np
import pytest

from tanas_core.bench.soak import bench_soak, least_squares_slope
from tanas_core.workspace.archive import verify_artifacts


@pytest.mark.unit
def test_the_slope_is_least_squares():
    rng = np.random.default_rng(0)
    rounds = np.arange(1.0, 9.0)
    rss = 900 + 3.5 * rounds + rng.normal(0, 2, rounds.size)
    assert least_squares_slope(list(zip(rounds, rss))) == pytest.approx(np.polyfit(rounds, rss, 1)[0], rel=1e-9)
    assert least_squares_slope([(1.0, 5.0), (1.0, 7.0)]) is None
    assert least_squares_slope([]) is None


def test_a_small_soak_finishes_every_job_with_no_death_and_every_artifact_intact(tmp_path, real_data):
    result = bench_soak(tmp_path / "ws", suite="mnist4", preset="smoke", archs=("vgg16", "resnet18"), workers=2,
                        rounds=1)
    assert [job["status"] for job in result["jobs"]] == ["done"] * 5, result["jobs"]
    assert {(job["client"], job["kind"]) for job in result["jobs"]} == {
        ("runner", "zoo"), ("runner", "validate"), ("runner", "search"), ("second process", "zoo"),
        ("second process", "distances")}
    assert result["deaths"] == [] and result["retries"] == 0
    assert result["artifacts"]["checked"] > 8 and result["artifacts"]["bad"] == []
    assert result["worker_peaks_mb"]["train_zoo_job"] > 100  # a worker holding torch is hundreds of MiB
    parent = result["parent"]
    assert len(parent["after_round_mb"]) == 1 and parent["samples"] > 0
    assert parent["peak_mb"] > 100 and parent["final_mb"] > 100  # a process holding torch is hundreds of MiB
    assert parent["slope_mb_per_round"] is None  # one round: no slope over the rounds after the first


def test_verify_artifacts_names_a_damaged_file(workspace):
    import torch

    ref = workspace.write_tensors("fisher", "k", {"fisher": torch.arange(6.0)})
    workspace.put_result("fisher", "k", {}, ref)
    assert verify_artifacts(workspace) == dict(checked=1, bad=[])
    path = workspace.root / ref.path
    path.write_bytes(path.read_bytes()[:-3])
    assert verify_artifacts(workspace) == dict(checked=1, bad=[ref.path])


def test_a_reader_holding_a_replaced_row_reads_the_file_that_replaced_it(workspace):
    """Found by a soak: a report read a network's row, a second process then stored the same network again (its file
    named by its own sha256) and the first file was removed, so the report failed with "artifact ... is missing"."""
    import torch

    first = workspace.write_tensors("fisher", "k", {"fisher": torch.zeros(4)})
    workspace.put_result("fisher", "k", {}, first)
    second = workspace.write_tensors("fisher", "k", {"fisher": torch.ones(4)})
    workspace.put_result("fisher", "k", {}, second)  # removes the first file: no row names it any more
    assert not (workspace.root / first.path).exists()
    assert torch.equal(workspace.read_tensors(first)["fisher"], torch.ones(4))
    # a file that nothing replaced is still an error that says so
    workspace.put_result("fisher", "other", {}, workspace.write_tensors("fisher", "other", {"fisher": torch.ones(2)}))
    lone = workspace.get_result("fisher", "other")[1]
    (workspace.root / lone.path).unlink()
    with pytest.raises(Exception, match="is missing"):
        workspace.read_tensors(lone)
