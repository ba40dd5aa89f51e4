"""The command line parses into the library's requests (issue 11): every option reaches its request, the defaults
are the request classes' own, a bad value is one ``error:`` line, and ``data check`` finds the data beside the
checkout (bug 7) and fails when a built-in suite lacks a dataset."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from tanas_core.cli import build_parser, main, parse_request
from tanas_core.errors import Cancelled, TanasError
from tanas_core.requests import (
    ClosestSettings,
    CompareRequest,
    DistanceRequest,
    FisherConfig,
    SearchBudget,
    SearchRequest,
    ZooRequest,
    ZooSearchRequest,
)
from tanas_core.search import nas

TARGET = "ld8:mnist-10class"
FISHER_OPTIONS = ["--head", "own", "--projection-dim", "64", "--workers", "2", "--samples", "128",
                  "--head-samples", "256", "--head-weight-decay", "0.01"]
FISHER = FisherConfig(samples=128, head_samples=256, head="own", projection_dim=64, head_weight_decay=0.01)


@pytest.mark.parametrize("command", ["search", "compare"])
def test_search_and_compare_keep_head_projection_and_workers(command):
    """Bug 2: search / compare used to drop --head, --projection-dim and --workers."""
    request = parse_request([command, "--target", TARGET, *FISHER_OPTIONS])
    assert isinstance(request, SearchRequest if command == "search" else CompareRequest)
    assert request.closest.fisher == FISHER
    assert request.closest.workers == 2


class _Stop(Exception):
    """Raised by the fake library call: the test only needs the request it was given."""


def test_search_command_hands_the_parsed_request_to_run_search(monkeypatch):
    seen = []

    def fake_run_search(request, context):
        seen.append((request, context))
        raise _Stop

    monkeypatch.setattr(nas, "run_search", fake_run_search)
    with pytest.raises(_Stop):  # not a TanasError: a real bug propagates with its traceback
        main(["search", "--target", TARGET, *FISHER_OPTIONS, "--device", "cpu"])
    request, context = seen[0]
    assert request.closest.fisher.head == "own" and request.closest.fisher.projection_dim == 64
    assert request.closest.workers == 2 and context.device == "cpu" and context.backend.in_process


@pytest.mark.parametrize("argv, expected", [
    (["distance", "--suite", "mnist4"], DistanceRequest(suite="mnist4")),
    (["closest", "--suite", "mnist4", "--target", "mnist-10class"], DistanceRequest(suite="mnist4")),
    (["zoo", "train", "--suite", "mnist4"], ZooRequest(suite="mnist4")),
    (["bench", "zoo"], ZooRequest(suite="ld8")),
    (["zoo", "search", "--suite", "mnist4"], ZooSearchRequest(suite="mnist4")),
    (["search", "--target", TARGET], SearchRequest(target=TARGET)),
    (["compare", "--target", TARGET], CompareRequest(target=TARGET)),
])
def test_argparse_defaults_are_the_request_defaults(argv, expected):
    assert parse_request(argv) == expected


def test_request_options_default_to_none_so_requests_supply_defaults():
    args = build_parser().parse_args(["search", "--target", TARGET])
    for name in ("arch", "metric", "seeds", "sigma", "samples", "head_samples", "head", "projection_dim",
                 "head_weight_decay", "workers", "preset", "top", "budget", "seed", "space", "method", "device",
                 "backend"):
        assert getattr(args, name) is None, name


def test_every_option_reaches_the_request():
    request = parse_request(["search", "--target", TARGET, "--arch", "vgg16,resnet18", "--metric", "frechet",
                             "--seeds", "3", "--sigma", "0.01", "--top", "2",
                             "--baselines", "mnist-digit0,mnist-digit6",
                             "--preset", "smoke", "--seed", "5", "--space", "standard", "--method", "random",
                             "--budget", "candidates=3,max_seconds=60", *FISHER_OPTIONS])
    closest = ClosestSettings(archs=("vgg16", "resnet18"), seeds=3, metric="frechet", sigma=0.01, workers=2, top=2,
                              baselines=("mnist-digit0", "mnist-digit6"),
                              fisher=FISHER)
    assert request == SearchRequest(target=TARGET, space="standard", method="random", preset="smoke", seed=5,
                                    budget=SearchBudget(candidates=3, max_seconds=60.0), closest=closest)
    zoo = parse_request(["zoo", "train", "--suite", "mnist4", "--workers", "2", "--tasks", "mnist-digit0",
                         "--networks", "both"])
    assert zoo.workers == 2 and zoo.tasks == ("mnist-digit0",) and zoo.networks == "both"


def test_fisher_images_out_of_range_are_explained_not_clipped():
    # the Fisher's images are held-out probe images, so fewer head images than M is fine ...
    fisher = parse_request(["distance", "--suite", "mnist4", "--samples", "1024", "--head-samples", "256"]).fisher
    assert (fisher.samples, fisher.head_samples) == (1024, 256)
    # ... and M outside its range is the request's error, never a silent clip
    with pytest.raises(TanasError, match=r"samples must be in 2..8192, got 9000"):
        parse_request(["distance", "--suite", "mnist4", "--samples", "9000"])


def test_budget_out_of_range_is_one_error_line_naming_the_range(capsys):
    assert main(["search", "--target", TARGET, "--budget", "candidates=99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: search budget: candidates must be in 2..32, got 99")
    assert len(err.strip().splitlines()) == 1
    assert main(["compare", "--target", TARGET, "--budget", "speed=11"]) == 2
    assert "is not NAME=VALUE" in capsys.readouterr().err


def test_cancel_exits_130_and_says_finished_work_is_kept(monkeypatch, capsys):
    def cancelled(request, context):
        raise Cancelled("cancelled")

    monkeypatch.setattr(nas, "run_search", cancelled)
    assert main(["search", "--target", TARGET]) == 130
    assert "kept" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ data check

def _data_check(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tanas_core", "data", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_data_check_finds_the_datasets_beside_the_checkout(tmp_path):
    """Bug 7: run as the README shows, from the checkout, with no TANAS_DATA_DIR."""
    shared = REPO.parent / "shared" / "datasets"
    if not (shared / "mnist.npz").is_file():
        pytest.skip(f"{shared} does not hold the offline data pack")
    env = {k: v for k, v in os.environ.items() if k != "TANAS_DATA_DIR"}
    env["TANAS_HOME"] = str(tmp_path / "empty-home")
    result = _data_check(env)
    assert f"data directory: {shared.resolve()}" in result.stdout
    assert "mnist             ok" in result.stdout and "Traceback" not in result.stderr
    has_cifar100 = (shared / "cifar100.npz").is_file() or (shared / "cifar-100-python").is_dir()
    assert result.returncode == (0 if has_cifar100 else 1), result.stdout
    if not has_cifar100:
        assert "cannot run: cifar100_4 (needs cifar100)" in result.stdout


def test_data_check_fails_and_says_how_to_provide_missing_datasets(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = dict(os.environ, TANAS_DATA_DIR=str(empty), TANAS_HOME=str(tmp_path / "home"))
    result = _data_check(env)
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "mnist             MISSING" in out and "digits            ok" in out
    assert "mnist4 (needs mnist)" in out and "ld8 (needs cifar10, mnist)" in out
    assert "to provide the missing datasets:" in out
    assert "mnist: dataset 'mnist' (MNIST handwritten digits) is not available: put mnist.npz" in out
    assert "TANAS_DATA_DIR" in out and "--download" in out
