"""The command line, run as a user runs it: ``python -m tanas_core ...`` in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO


def run_cli(*args: str, home) -> subprocess.CompletedProcess:
    env = dict(os.environ, TANAS_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "tanas_core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("command", [[], ["data", "check"], ["tasks", "list"], ["tasks", "add"], ["zoo", "train"],
                                     ["zoo", "list"], ["zoo", "search"], ["distance"], ["closest"], ["search"],
                                     ["compare"], ["bench", "fisher"], ["bench", "pages"], ["bench", "zoo"],
                                     ["bench", "backends"]])
def test_help_for_every_command(command, tmp_path):
    result = run_cli(*command, "--help", home=tmp_path)
    assert result.returncode == 0 and "usage: python -m tanas_core" in result.stdout


def test_data_check_and_tasks_list(real_data, tmp_path):
    result = run_cli("data", "check", home=tmp_path)
    assert "mnist             ok" in result.stdout and "train  60000" in result.stdout
    # exit 1 exactly when a built-in suite lacks a dataset: the offline pack has no CIFAR-100 (cifar100_4)
    if "cifar100          MISSING" in result.stdout:
        assert result.returncode == 1 and "cannot run: cifar100_4 (needs cifar100)" in result.stdout
    else:
        assert result.returncode == 0 and "every built-in suite has its data" in result.stdout
    listing = run_cli("tasks", "list", "--suite", "ld8", home=tmp_path)
    assert listing.returncode == 0 and "cifar10-bird-frog-horse-else" in listing.stdout


def test_custom_task_add_and_bad_json(tmp_path):
    # the bundled digits dataset: `tasks add` checks every output has images, and digits needs no data pack
    ok = run_cli("tasks", "add", "--json", '{"name": "fives", "dataset": "digits", "groups": [["5"]], "other": true}',
                 home=tmp_path)
    assert ok.returncode == 0 and "saved custom task 'fives'" in ok.stdout
    assert "fives" in run_cli("tasks", "list", "--suite", "custom", home=tmp_path).stdout
    other = '{"name": "fives", "dataset": "digits", "groups": [["5"], ["6"]]}'
    refused = run_cli("tasks", "add", "--json", other, home=tmp_path)
    assert refused.returncode == 2 and "already exists with another definition" in refused.stderr
    replaced = run_cli("tasks", "add", "--json", other, "--replace", home=tmp_path)
    assert replaced.returncode == 0 and "2 outputs" in replaced.stdout
    bad = run_cli("tasks", "add", "--json", '{"name": "x", "dataset": "mnist", "groups": [["5"], ["5"]]}',
                  home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: task 'x': class '5' appears in groups 1 and 2")
    assert "Traceback" not in bad.stderr
    garbage = run_cli("tasks", "add", "--json", "{not json", home=tmp_path)
    assert garbage.returncode == 2 and "neither a file nor valid JSON" in garbage.stderr


def test_zoo_train_then_reuse_then_list(real_data, tmp_path):
    args = ["zoo", "train", "--suite", "mnist4", "--archs", "vgg16", "--tasks", "mnist-digit0", "--seeds", "1",
            "--preset", "demo", "--device", "cpu"]
    first = run_cli(*args, home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "mnist-digit0 vgg16 s0" in first.stdout and "trained" in first.stdout
    second = run_cli(*args, home=tmp_path)
    assert second.returncode == 0 and "reused" in second.stdout
    listing = run_cli("zoo", "list", "--verify", home=tmp_path)
    assert listing.returncode == 0 and "mnist-digit0" in listing.stdout and " ok" in listing.stdout
    bad = run_cli("zoo", "train", "--suite", "mnist4", "--archs", "vgg99", home=tmp_path)
    assert bad.returncode == 2 and "unknown architecture" in bad.stderr


def test_distance_and_closest_commands_compute_then_read_the_store(real_data, tmp_path):
    common = ["--suite", "mnist4", "--arch", "vgg16", "--seeds", "1", "--metric", "frechet", "--samples", "16",
              "--head-samples", "32", "--device", "cpu"]
    first = run_cli("distance", *common, "--out", str(tmp_path / "csv"), home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    assert "mean d[b, t] (row = baseline b, column = target t)" in first.stdout and "computed in" in first.stdout
    csv = (tmp_path / "csv" / "mnist4_vgg16_frechet.csv").read_text().splitlines()
    assert csv[0] == "seed,baseline,target,distance" and len(csv) == 1 + 16
    # without --out the CSV goes to the workspace, never silently into the current folder (issue 26)
    again = run_cli("distance", *common, home=tmp_path / "home")
    assert "read from the workspace" in again.stdout
    assert (tmp_path / "home" / "exports" / "distances" / "mnist4_vgg16_frechet.csv").read_text().splitlines() == csv
    closest = run_cli("closest", *common, "--target", "mnist-10class", "--top", "2", home=tmp_path / "home")
    assert closest.returncode == 0 and "1. mnist-" in closest.stdout and "3. " not in closest.stdout
    bad = run_cli("distance", "--suite", "mnist4", "--metric", "logdet", "--sigma", "0", home=tmp_path / "home")
    assert bad.returncode == 2 and "sigma must be in" in bad.stderr and "Traceback" not in bad.stderr
