"""Faults injected into real processes and a real SQLite file: nothing finished is lost, nothing broken is trusted."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO
from tanas_core.store import Workspace
from tanas_core.tasks import get_suite
from tanas_core.zoo import train_zoo, verify_checkpoint

TASKS = ["mnist-digit0", "mnist-digit6", "mnist-0123-else", "mnist-10class"]


def _start(workspace: Workspace, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tanas_core", "--workspace", str(workspace.root), *args],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))


def _wait_until(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended before the fault: {process.stderr.read().decode()[-1500:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the condition for injecting the fault never came")
        time.sleep(0.05)


def test_sigkill_mid_zoo_keeps_every_finished_network_and_a_rerun_completes(real_data, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    process = _start(workspace, "zoo", "train", "--suite", "mnist4", "--archs", "vgg16,resnet18", "--seeds", "1",
                     "--preset", "smoke", "--tasks", ",".join(TASKS))
    _wait_until(lambda: len(workspace.list_networks()) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    finished = workspace.list_networks()
    assert 2 <= len(finished) < 8
    for record in finished:
        verify_checkpoint(workspace, record)  # every indexed checkpoint is whole
    statuses = {}
    records = train_zoo(workspace, get_suite("mnist4"), ["vgg16", "resnet18"], [0], "smoke", device="cpu",
                        tasks=TASKS, on_event=lambda e: statuses.__setitem__((e.task, e.arch), e.status))
    assert len(records) == 8
    reused = {(r.task, r.arch) for r in finished}
    assert {key for key, status in statuses.items() if status == "reused"} == reused  # artifacts lost: 0


def test_sigkill_mid_search_keeps_its_partial_history_and_a_rerun_finishes(real_data, tmp_path):
    from tanas_core.fuse import SearchBudget
    from tanas_core.nas import run_search

    workspace = Workspace(tmp_path / "ws")
    budget = "candidates=2,rounds=3,epochs_per_round=3,final_epochs=0.5"
    process = _start(workspace, "search", "--target", "mnist4:mnist-digit0", "--space", "standard", "--preset",
                     "smoke", "--budget", budget)

    def alpha_events() -> int:
        with sqlite3.connect(workspace.db_path) as conn:
            return conn.execute("SELECT COUNT(*) FROM events WHERE payload LIKE '%\"alpha\"%'").fetchone()[0]

    _wait_until(lambda: alpha_events() >= 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    runs = workspace.list_results("search")
    assert len(runs) == 1 and runs[0]["status"] == "running"  # the dead process never marked it finished
    kept = workspace.read_events(f"search:{runs[0]['run_id']}")
    assert len(kept) >= 3 and [e["seq"] for e in kept] == list(range(len(kept)))
    suite = get_suite("mnist4")
    record = run_search(workspace, suite, suite.task("mnist-digit0"), space="standard", method="fuse",
                        preset="smoke", budget=SearchBudget(candidates=2, rounds=3, epochs_per_round=3,
                                                            final_epochs=0.5), device="cpu")
    assert record["run_id"] == runs[0]["run_id"] and record["status"] == "done"
    assert workspace.read_events(f"search:{record['run_id']}")[-1]["type"] == "finished"


def test_a_locked_database_makes_writers_wait_not_fail(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    locked = threading.Event()

    def hold_the_lock():
        conn = sqlite3.connect(workspace.db_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # another writer holds the write lock for 2 s
        locked.set()
        time.sleep(2.0)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait(10)
    started = time.monotonic()
    workspace.put_result("test", "while-locked", {"value": 1})
    waited = time.monotonic() - started
    holder.join()
    assert waited >= 1.5
    assert workspace.get_result("test", "while-locked")[0] == {"value": 1}


WRITER = """
import sys
from tanas_core.store import Workspace
workspace = Workspace(sys.argv[1])
for i in range(150):
    workspace.append_event("shared", {"writer": sys.argv[2], "i": i})
    workspace.put_result("row", f"{sys.argv[2]}-{i}", {"i": i})
"""


def test_two_processes_writing_at_once_lose_no_row(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(workspace.root), name], cwd=REPO,
                                stderr=subprocess.PIPE) for name in ("a", "b")]
    for writer in writers:
        assert writer.wait(240) == 0, writer.stderr.read().decode()[-1000:]
    events = workspace.read_events("shared")
    assert len(events) == 300 and [e["seq"] for e in events] == list(range(300))
    for name in ("a", "b"):
        assert [e["i"] for e in events if e["writer"] == name] == list(range(150))
    assert len(workspace.list_results("row")) == 300
