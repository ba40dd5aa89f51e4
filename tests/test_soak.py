"""The soak benchmark's own parts, and a small soak on real data: two clients on one workspace, worker processes,
every artifact checked at the end."""
from __future__ import annotations

import numpy as np
import pytest

from tanas_core.bench.soak import bench_soak, slope_mib_per_minute
from tanas_core.workspace.archive import verify_artifacts


@pytest.mark.unit
def test_the_slope_is_least_squares_after_the_warm_up_share():
    rng = np.random.default_rng(0)
    seconds = np.arange(200.0)
    rss = np.where(seconds < 50, 100 + 8 * seconds, 500 + 0.05 * seconds + rng.normal(0, 0.5, 200))
    kept = slice(50, None)
    expected = 60 * np.polyfit(seconds[kept], rss[kept], 1)[0]
    assert slope_mib_per_minute(list(zip(seconds, rss))) == pytest.approx(expected, rel=1e-9)
    assert slope_mib_per_minute([(0.0, 1.0)] * 5) is None


def test_a_small_soak_finishes_every_job_with_no_death_and_every_artifact_intact(tmp_path, real_data):
    result = bench_soak(tmp_path / "ws", suite="mnist4", preset="smoke", archs=("vgg16", "resnet18"), workers=2,
                        rounds=1)
    assert [job["status"] for job in result["jobs"]] == ["done"] * 5, result["jobs"]
    assert {(job["client"], job["kind"]) for job in result["jobs"]} == {
        ("runner", "zoo"), ("runner", "validate"), ("runner", "search"), ("second process", "zoo"),
        ("second process", "distances")}
    assert result["deaths"] == [] and result["retries"] == 0
    assert result["artifacts"]["checked"] > 8 and result["artifacts"]["bad"] == []
    assert result["worker_peaks_mb"]["train_zoo_network"] > 100  # a worker holding torch is hundreds of MiB
    parent = result["parent"]
    assert len(parent["after_round_mb"]) == 1 and parent["samples"] > 0
    assert parent["peak_mb"] >= parent["final_mb"] > 100


def test_verify_artifacts_names_a_damaged_file(workspace):
    import torch

    ref = workspace.write_tensors("fisher", "k", {"fisher": torch.arange(6.0)})
    workspace.put_result("fisher", "k", {}, ref)
    assert verify_artifacts(workspace) == dict(checked=1, bad=[])
    path = workspace.root / ref.path
    path.write_bytes(path.read_bytes()[:-3])
    assert verify_artifacts(workspace) == dict(checked=1, bad=[ref.path])
