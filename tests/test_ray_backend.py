"""The Ray backend: a zoo, a distance matrix and a random search computed as Ray tasks on a local Ray equal the
local results exactly (same seeds, CPU, the same number of torch threads), and land in the same workspace store."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tanas_core.data.suites import get_suite
from tanas_core.data.tasks import make_splits
from tanas_core.distances.matrices import distance_matrices
from tanas_core.errors import TanasError
from tanas_core.requests import DistanceRequest, FisherConfig, ZooRequest
from tanas_core.search.fuse import SearchBudget
from tanas_core.search.random_search import random_search
from tanas_core.search.space import standard_space
from tanas_core.training.checkpoints import verify_checkpoint
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.backends import LocalBackend, make_backend
from tanas_core.workspace.context import RunContext, quiet_context
from tanas_core.workspace.ray_backend import RayBackend, start_local_ray, use_private_cluster_environment
from tanas_core.workspace.store import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray started by the tests themselves (as a notebook would), with the settings of the private cluster
    the backend starts."""
    use_private_cluster_environment()
    import ray

    if ray.is_initialized():  # an earlier test's job started one in this process
        ray.shutdown()
    start_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def mnist4(real_data):
    return get_suite("mnist4")


@pytest.fixture
def one_thread():
    """Ray tasks ask for one CPU and run with one torch thread; CPU float reductions depend on the thread count,
    so the local reference runs with one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_zoo_on_ray_equals_local_and_lands_in_the_store(ray_cluster, one_thread, tmp_path, mnist4, tiny_preset):
    request = ZooRequest(suite="mnist4", archs=("vgg16", "resnet18"), preset="tiny",
                         tasks=("mnist-digit0", "mnist-10class"))
    events = []
    on_ray = train_zoo(request, RunContext(Workspace(tmp_path / "ray"), backend=RayBackend(), on_event=events.append))
    local = train_zoo(request, quiet_context(Workspace(tmp_path / "local")))
    assert [r.key for r in on_ray] == [r.key for r in local] and len(local) == 4
    for a, b in zip(on_ray, local):
        weights_a = verify_checkpoint(Workspace(tmp_path / "ray"), a)
        weights_b = verify_checkpoint(Workspace(tmp_path / "local"), b)
        assert weights_a.keys() == weights_b.keys()
        assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a), a.key
        assert (a.test_accuracy, a.val_accuracy, a.history) == (b.test_accuracy, b.val_accuracy, b.history)
    # progress streamed back: every network reported training, then trained
    assert sorted(e.index for e in events if e.status == "trained") == [0, 1, 2, 3]
    # stored by the driver: a second run reuses all of them without Ray work
    again = train_zoo(request, RunContext(Workspace(tmp_path / "ray"), backend=RayBackend(), on_event=events.append))
    assert [r.key for r in again] == [r.key for r in on_ray]
    assert [e.status for e in events[-4:]] == ["reused"] * 4


@pytest.mark.parametrize("metric", ["logdet", "frechet-full"])
def test_distance_matrix_on_ray_equals_local(ray_cluster, one_thread, tmp_path, mnist4, tiny_preset, metric):
    request = DistanceRequest(suite="mnist4", archs=("vgg16",), seeds=2, metric=metric, preset="tiny",
                              view="tanas", fisher=FisherConfig(samples=32, head_samples=64))
    [on_ray] = distance_matrices(request, quiet_context(Workspace(tmp_path / "ray"), backend=RayBackend()))
    [local] = distance_matrices(request, quiet_context(Workspace(tmp_path / "local")))
    assert np.array_equal(on_ray.matrices, local.matrices)
    assert np.array_equal(on_ray.noise_floor, local.noise_floor)
    assert (on_ray.matrices[:, ~np.eye(4, dtype=bool)] > 0).all()
    ray_store = Workspace(tmp_path / "ray")
    # every F[b, t] of both seeds and every replicate's F[r, t] (2 per task and seed), written by the driver
    assert len(ray_store.list_results("fisher")) == 2 * 4 * 4 + 2 * 4 * 2
    [cached] = distance_matrices(request, quiet_context(ray_store, backend=RayBackend()))
    assert cached.cached and np.array_equal(cached.matrices, on_ray.matrices)


def test_random_search_on_ray_equals_local(ray_cluster, one_thread, mnist4, tiny_preset):
    splits = make_splits(mnist4.task("mnist-10class"), tiny_preset.sizes, 0, mnist4.spec)
    budget = SearchBudget(random_candidates=3, random_epochs=6)  # enough steps for candidates to leave chance
    args = (standard_space(), splits.tensors("train"), splits.tensors("val"), 10, tiny_preset, budget)
    events = []
    on_ray = random_search(*args, context=RunContext(None, backend=RayBackend(), on_event=events.append))
    local = random_search(*args)
    assert on_ray.status == local.status == "done"
    assert _without_times(on_ray.evaluated) == _without_times(local.evaluated)
    assert on_ray.best == local.best
    assert len({row["val_accuracy"] for row in local.evaluated}) > 1, "candidates should differ for a real check"
    assert sorted(e["step"] for e in events) == [1, 2, 3]


def _without_times(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def test_ray_task_errors_arrive_as_the_library_errors(ray_cluster):
    with pytest.raises(ValueError, match="unknown suite") as caught:
        list(RayBackend().map(get_suite, [("ld8",), ("no-such-suite",)]))
    assert type(caught.value) is TanasError and "Traceback" not in str(caught.value)


def test_backend_choice_errors_are_clear():
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        make_backend("spark")
    with pytest.raises(ValueError, match="needs the ray backend"):
        make_backend("local", "127.0.0.1:6379")
    with pytest.raises(ValueError, match="cpus_per_task"):
        RayBackend(cpus_per_task=0)
    assert isinstance(make_backend("local", workers=2), LocalBackend)


class _SlowStartingRay:
    """A stand-in for the ``ray`` module whose node startup times out ``timeouts`` times, as Ray's does when its
    raylet takes more than its fixed 30 s on a busy machine (a real timeout cannot be produced on demand)."""

    def __init__(self, timeouts: int, error: str = "The current node timed out during startup. This could happen"):
        self.timeouts, self.error, self.calls = timeouts, error, []

    def init(self, **options):
        self.calls.append(("init", options))
        if self.timeouts:
            self.timeouts -= 1
            raise Exception(self.error)  # what Ray raises

    def shutdown(self):
        self.calls.append(("shutdown", None))


@pytest.mark.unit
def test_a_local_ray_start_that_times_out_is_retried_then_refused_clearly():
    ray = _SlowStartingRay(timeouts=2)
    start_local_ray(ray, num_cpus=2)
    assert [name for name, _ in ray.calls] == ["init", "shutdown", "init", "shutdown", "init"]
    assert all(options == {"num_cpus": 2} for name, options in ray.calls if name == "init")
    with pytest.raises(ValueError, match="did not start: its node timed out 3 times") as caught:
        start_local_ray(_SlowStartingRay(timeouts=3), num_cpus=2)
    assert isinstance(caught.value, TanasError)
    with pytest.raises(ValueError, match="did not start: its node timed out 3 times") as caught:
        RayBackend()._connect(_SlowStartingRay(timeouts=3))  # the backend's own start says the same
    assert "cannot connect" not in str(caught.value)
    with pytest.raises(Exception, match="port in use"):  # any other failure is not retried
        start_local_ray(other := _SlowStartingRay(timeouts=1, error="port in use"))
    assert [name for name, _ in other.calls] == ["init"]


def test_cli_reports_an_unreachable_ray_cluster(tmp_path):
    env = dict(os.environ, TANAS_HOME=str(tmp_path / "home"), RAY_AUTH_MODE="disabled")
    done = subprocess.run([sys.executable, "-m", "tanas_core", "zoo", "train", "--suite", "mnist4", "--archs",
                           "vgg16", "--preset", "smoke", "--backend", "ray", "--ray-address", "127.0.0.1:9"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot connect to the Ray cluster at '127.0.0.1:9'" in done.stderr
    assert "Traceback" not in done.stderr


def test_zoo_page_runs_its_job_on_ray_when_chosen_in_the_sidebar(ray_cluster, real_data):
    from streamlit.testing.v1 import AppTest

    from tanas_core.jobs.runner import get_job, list_jobs

    app = AppTest.from_file(str(REPO / "app_pages/2_Zoo.py"), default_timeout=120).run()
    [choice] = [radio for radio in app.sidebar.radio if radio.label == "Run jobs on"]
    choice.set_value("ray").run()
    assert [box.label for box in app.sidebar.text_input] == ["Ray address"]
    [suite] = [box for box in app.selectbox if box.label == "Suite"]
    suite.set_value("mnist4")
    [preset] = [box for box in app.selectbox if box.label == "Preset"]
    preset.set_value("smoke")
    app.button[0].click().run()  # the form's submit button
    assert not app.exception and not app.error
    workspace = Workspace()
    [job] = list_jobs(workspace, "zoo")
    assert job.on_ray and job.run["ray_address"] is None
    deadline = time.monotonic() + 300
    while get_job(workspace, job.id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    assert get_job(workspace, job.id).status == "done", get_job(workspace, job.id).error
    assert len(workspace.list_networks(suite="mnist4", preset="smoke")) == 4  # stored by the server process
    app.run()
    assert any("on Ray" in element.value for element in app.success)


def test_a_private_ray_runs_its_tasks_at_the_callers_niceness_not_rays_15():
    """Ray starts workers at nice 15; the private cluster the backend starts runs them as the local backend's
    processes run, or a busy machine leaves them a small share of its cores."""
    probe = ("import os\n"
             "from tanas_core.workspace.ray_backend import RayBackend\n"
             "print('niceness', [value for _, value in RayBackend(num_cpus=1).map(os.nice, [(0,)])])\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"niceness [{os.nice(0)}]" in done.stdout, done.stdout[-2000:]
