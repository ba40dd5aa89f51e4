"""Worker processes: what a dead worker costs (only its item), what it reports (item, signal, memory, stack), what
travels (bytes, not file descriptors), and the memory bound ``--workers`` respects. Real spawned processes, real
signals."""
from __future__ import annotations

import json
import logging
import signal

import pytest

from tanas_core.errors import TanasError
from tanas_core.workspace.backends import LocalBackend
from tanas_core.workspace.worker_pool import WorkerPool, bare_main, check_memory, describe_item


def _kill_self(signal_number: int) -> None:
    import os

    os.kill(os.getpid(), signal_number)  # as the out-of-memory killer does (SIGKILL), or a native abort (SIGABRT)


def test_a_worker_that_always_dies_stops_the_run_naming_the_item_the_signal_and_that_work_is_kept(tmp_path):
    pool = WorkerPool(2, 1, tmp_path)
    with pytest.raises(TanasError, match=r"(?s)stopped abruptly on _kill_self\(9\): SIGKILL \(signal 9\)"
                                         r".*out-of-memory.*3 times on this item.*finished before is kept"
                                         r".*run the same command again"):
        list(pool.map(_kill_self, {0: (int(signal.SIGKILL),)}))
    deaths = [json.loads(line) for line in (tmp_path / "deaths.jsonl").read_text().splitlines()]
    assert [d["attempt"] for d in deaths] == [1, 2, 3] and {d["cause"] for d in deaths} == {"SIGKILL (signal 9)"}
    assert all(d["item"] == "_kill_self(9)" and d["rss_mb"] is None or d["rss_mb"] > 10 for d in deaths)


def test_a_native_crash_is_reported_with_the_workers_python_stack(tmp_path):
    pool = WorkerPool(1, 1, tmp_path)
    with pytest.raises(TanasError) as raised:
        list(pool.map(_kill_self, {0: (int(signal.SIGABRT),)}))
    death = pool.deaths[-1]
    assert death.exitcode == -signal.SIGABRT and death.cause == "SIGABRT (signal 6)"
    # faulthandler's dump names the function the worker was in when it aborted
    assert "Fatal Python error: Aborted" in death.stack and "_kill_self" in death.stack
    assert "_kill_self" in str(raised.value)


def _die_on(marker: str, value: int) -> int:
    import os
    from pathlib import Path

    if value == 3 and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), 9)
    return value * 10


def test_one_death_costs_only_its_item_and_is_logged_with_item_and_signal(tmp_path, caplog):
    pool = WorkerPool(2, 1, tmp_path / "logs")
    with caplog.at_level(logging.WARNING, logger="tanas_core.workers"):
        results = dict(pool.map(_die_on, {v: (str(tmp_path / "died"), v) for v in range(6)}))
    assert results == {i: i * 10 for i in range(6)}
    [death] = pool.deaths
    assert death.item.startswith("_die_on(") and death.item.endswith(", 3)") and death.exitcode == -9
    assert "SIGKILL (signal 9)" in caplog.text and "attempt 2 of 3" in caplog.text and death.item in caplog.text
    # workers that left cleanly leave no stack file; the peak memory of this kind of work is recorded
    assert [p.name for p in (tmp_path / "logs").glob("worker-*.log")] == []
    assert json.loads((tmp_path / "logs" / "peaks.json").read_text())["_die_on"] > 10


def _hold(megabytes: int) -> int:
    block = bytearray(megabytes << 20)  # zero pages are resident only once written
    block[::4096] = b"x" * len(block[::4096])
    return len(block) >> 20


def test_a_workers_recorded_peak_is_its_own_not_the_size_of_the_parent_that_started_it(tmp_path):
    # ru_maxrss survives exec: every spawned worker reported the parent's size at its start (2,486 MiB for the zoo
    # and the Fisher workers of one soak alike).
    ballast = bytearray(2500 << 20)
    ballast[::4096] = b"y" * len(ballast[::4096])
    assert dict(WorkerPool(1, 1, tmp_path).map(_hold, {0: (300,)})) == {0: 300}
    peak = json.loads((tmp_path / "peaks.json").read_text())["_hold"]
    assert 300 < peak < 2000, peak  # its 300 MiB block and torch (about 500 MiB), not the parent's 2,500 MiB
    del ballast


def _refuse(value: int) -> int:
    raise TanasError(f"item {value} is bad")


def test_a_workers_exception_is_raised_as_itself_and_the_other_workers_are_stopped(tmp_path):
    pool = WorkerPool(2, 1, tmp_path)
    with pytest.raises(TanasError, match=r"item [12] is bad"):
        list(pool.map(_refuse, {1: (1,), 2: (2,)}))
    assert pool.deaths == []


def test_workers_are_refused_when_their_measured_peak_memory_does_not_fit(tmp_path):
    from tanas_core.workspace.worker_pool import available_mb

    available = available_mb()
    if available is None:
        pytest.skip("needs /proc/meminfo")
    check_memory(64, "train_zoo_network", tmp_path)  # nothing measured yet: nothing refused
    (tmp_path / "peaks.json").write_text(json.dumps({"train_zoo_network": available / 1.5}))
    check_memory(1, "train_zoo_network", tmp_path)
    check_memory(4, "other_work", tmp_path)
    with pytest.raises(TanasError, match=r"2 worker processes need about .* MiB \(train_zoo_network: .* each.*"
                                         r"available now: use --workers 1"):
        check_memory(2, "train_zoo_network", tmp_path)
    with pytest.raises(TanasError, match="use --workers 1"):
        list(LocalBackend(2, log_dir=tmp_path).map(train_zoo_network, [(1,)]))


def train_zoo_network(value: int) -> int:  # named as the zoo's work, so its measured peak applies
    return value


def test_an_item_is_described_by_its_work_and_its_named_or_scalar_arguments():
    class Task:
        name = "mnist-digit0"

    assert describe_item(train_zoo_network, (Task(), "densenet121", 0, None, [1, 2])) == \
        "train_zoo_network(mnist-digit0, densenet121, 0, None, list)"


def _die_once(marker: str, value: int) -> int:
    import os
    from pathlib import Path

    if value == 3 and not Path(marker).exists():
        Path(marker).touch()
        os._exit(9)  # a native crash, once
    return value * 10


def test_a_worker_that_dies_once_costs_only_a_retry_of_the_unfinished_items(tmp_path):
    from tanas_core.workspace.backends import LocalBackend

    results = dict(LocalBackend(2).map(_die_once, [(str(tmp_path / "died"), v) for v in range(6)]))
    assert (tmp_path / "died").exists() and results == {i: i * 10 for i in range(6)}


def _square(value: int) -> int:
    return value * value


def _weights_summary(state: dict, scale: float) -> tuple[int, float]:
    return len(state), scale * float(sum(tensor.double().sum() for tensor in state.values()))


def test_weights_travel_to_worker_processes_as_bytes_not_as_open_file_descriptors():
    """A report with ``--workers 2`` ran out of open files: every tensor of every queued DenseNet state went to the
    workers through a shared-memory file descriptor that stayed open. A worker backend's ``put`` now sends a dict of
    tensors as safetensors bytes, which arrive as the same tensors."""
    import torch

    from tanas_core.workspace.backends import LocalBackend
    from tanas_core.workspace.worker_pool import TensorsByValue

    state = {f"layer{i}.weight": torch.full((3, 2), float(i)) for i in range(800)}
    state["count"] = torch.tensor(7, dtype=torch.int64)
    assert LocalBackend(1).put(state) is state  # in this process: the value itself
    handle = LocalBackend(2).put(state)
    assert isinstance(handle, TensorsByValue)
    expected = float(sum(tensor.double().sum() for tensor in state.values()))
    results = dict(LocalBackend(2).map(_weights_summary, [(handle, 1.0), (handle, 2.0), (handle, 3.0)]))
    assert results == {0: (801, expected), 1: (801, 2 * expected), 2: (801, 3 * expected)}


def _many_tensors(count: int, value: float) -> dict:
    import torch

    return {f"layer{i}.weight": torch.full((2,), value) for i in range(count)}


def test_results_come_back_from_worker_processes_as_bytes_not_as_open_file_descriptors():
    """``zoo train --workers 2`` stopped after 27 DenseNet-121s: every trained state (722 tensors) came back through
    shared-memory file descriptors, held open while the map kept every result it had received, until 27 x 722
    reached the limit of 20,000 open files. Results now come back as bytes and are not kept once handed on: with a
    limit of open files below one result's tensor count, every result arrives whole."""
    resource = pytest.importorskip("resource")
    import os

    from tanas_core.workspace.backends import LocalBackend

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counting open files needs /proc")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = len(os.listdir("/proc/self/fd")) + 200  # the workers inherit it
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        results = dict(LocalBackend(2).map(_many_tensors, [(400, float(v)) for v in range(4)]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sorted(results) == [0, 1, 2, 3]
    for index, state in results.items():
        assert len(state) == 400 and all(float(tensor.sum()) == 2.0 * index for tensor in state.values())


def test_the_old_pools_abrupt_death_was_the_parent_running_out_of_descriptors_not_a_worker_dying():
    """The root cause of the DenseNet 'worker deaths' with no kernel message: ``ProcessPoolExecutor`` with torch's
    pickler receives each result tensor as a shared-memory file descriptor; when the parent runs out of them it fails
    to unpickle the result and reports BrokenProcessPool, "terminated abruptly", while its workers are alive. The
    same work through ``WorkerPool`` (bytes) arrives whole in the test above."""
    resource = pytest.importorskip("resource")
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import torch.multiprocessing  # noqa: F401  (registers torch's reductions, as importing torch's pools does)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counting open files needs /proc")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    with bare_main():  # an earlier AppTest may have left a page as __main__, which spawn would re-run in the worker
        pool.submit(_many_tensors, 1, 0.0).result()  # it starts with the usual limit: only the parent is short
    workers = list(pool._processes.values())
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(len(os.listdir("/proc/self/fd")) + 200, hard), hard))
    try:
        with pytest.raises(BrokenProcessPool, match="terminated abruptly") as raised:
            list(pool.map(_many_tensors, [400, 400], [0.0, 1.0]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        pool.shutdown(wait=True, cancel_futures=True)
    assert "ancdata" in str(raised.value.__cause__) or "Too many open files" in str(raised.value.__cause__)
    for process in workers:  # no worker crashed or was killed from outside: the pool itself ends its live workers
        process.join(10)
        assert process.exitcode == -signal.SIGTERM


def test_worker_processes_do_not_rerun_a_streamlit_page_installed_as_main(tmp_path, monkeypatch):
    # Streamlit (the app server, AppTest) installs the page it runs as __main__; spawn would re-run it in each worker
    import sys
    import types

    from tanas_core.workspace.backends import LocalBackend

    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('a worker re-ran the page')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert sorted(LocalBackend(2).map(_square, [(2,), (3,)])) == [(0, 4), (1, 9)]
    assert sys.modules["__main__"] is fake_main  # put back afterwards
