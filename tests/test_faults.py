"""Faults injected into real processes and a real SQLite file: nothing finished is lost, nothing broken is trusted."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from tanas_core.requests import ZooRequest
from tanas_core.training.checkpoints import verify_checkpoint
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.context import RunContext, quiet_context
from tanas_core.workspace.store import Workspace

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
    records = train_zoo(ZooRequest(suite="mnist4", archs=("vgg16", "resnet18"), preset="smoke", tasks=tuple(TASKS)),
                        RunContext(workspace, "cpu", on_event=lambda e: statuses.__setitem__((e.task, e.arch),
                                                                                             e.status)))
    assert len(records) == 8
    reused = {(r.task, r.arch) for r in finished}
    assert {key for key, status in statuses.items() if status == "reused"} == reused  # artifacts lost: 0


def test_sigkill_mid_search_keeps_its_partial_history_and_a_rerun_finishes(real_data, tmp_path):
    from tanas_core.requests import SearchBudget, SearchRequest
    from tanas_core.search.nas import run_search

    workspace = Workspace(tmp_path / "ws")
    budget = "candidates=2,rounds=3,epochs_per_round=3,final_epochs=1"
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
    request = SearchRequest(target="mnist4:mnist-digit0", space="standard", preset="smoke",
                            budget=SearchBudget(candidates=2, rounds=3, epochs_per_round=3, final_epochs=1.0))
    record = run_search(request, quiet_context(workspace, "cpu"))
    assert record.run_id == runs[0]["run_id"] and record.status == "done"
    assert workspace.read_events(f"search:{record.run_id}")[-1]["type"] == "finished"


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
from tanas_core.workspace.store import Workspace
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


NOBODY = 65534


def _as_nobody(*args: str, home: Path) -> subprocess.CompletedProcess:
    """Run the CLI as the unprivileged user ``nobody`` (root ignores permission bits, so this is how an unwritable
    workspace can be tested at all)."""
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m",
               "tanas_core", *args]
    return subprocess.run(command, cwd=REPO, env=dict(os.environ, TANAS_HOME=str(home)), capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def nobody_can_run_the_cli():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as the unprivileged user nobody")
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                            "-c", "import tanas_core.cli"], cwd=REPO, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot read this checkout or its venv: {probe.stderr.strip()[-200:]}")


def _snapshot(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_an_unwritable_workspace_is_a_clear_error_and_keeps_earlier_results(real_data, nobody_can_run_the_cli,
                                                                             tiny_preset):
    parent = Path(tempfile.mkdtemp(prefix="tanas-perm-", dir="/tmp"))
    try:
        parent.chmod(0o755)
        home = parent / "workspace"
        workspace = Workspace(home)
        train_zoo(ZooRequest(suite="mnist4", archs=("vgg16",), preset="tiny", tasks=("mnist-digit0",)),
                  quiet_context(workspace))
        before = _snapshot(home)
        for path in [home, *home.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)  # owned by root: read-only for nobody
        done = _as_nobody("zoo", "train", "--suite", "mnist4", "--archs", "vgg16", "--preset", "smoke",
                          "--tasks", "mnist-digit6", home=home)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
        assert f"workspace {home} is not writable" in done.stderr
        assert _snapshot(home) == before

        # Now the index is writable but the checkpoint folder is not: the training runs, its checkpoint cannot be
        # written, and nothing half-written is indexed.
        for path in [home, *home.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
            path.chmod(0o755 if path.is_dir() else 0o644)
        networks_dir = home / "artifacts" / "networks"
        os.chown(networks_dir, 0, 0)
        done = _as_nobody("zoo", "train", "--suite", "mnist4", "--archs", "vgg16", "--preset", "smoke",
                          "--tasks", "mnist-digit6", home=home)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
        assert "could not write" in done.stderr and "Permission denied" in done.stderr
        assert not list(networks_dir.glob(".*.tmp"))
        assert [r.task for r in Workspace(home).list_networks()] == ["mnist-digit0"]
        verify_checkpoint(Workspace(home), Workspace(home).list_networks()[0])
    finally:
        shutil.rmtree(parent, ignore_errors=True)
