"""Torch threads that follow the machine's load: the arithmetic on kernel counters, the counters' parsing, and the
governor's effect on torch, on constructed samples."""
from __future__ import annotations

import pytest
import torch

from tanas_core.workspace import fair_threads
from tanas_core.workspace.fair_threads import CpuSample, ThreadGovernor, read_sample
from tanas_core.workspace.fair_threads import fair_threads as threads_for

pytestmark = pytest.mark.unit
START = CpuSample(total=0, idle=0, own=0)


@pytest.mark.parametrize("after, expected", [
    (CpuSample(total=200, idle=200, own=0), 2),    # nothing runs: every core is ours
    (CpuSample(total=200, idle=0, own=200), 2),    # only this process runs, on both cores
    (CpuSample(total=200, idle=100, own=0), 1),    # another process holds one core
    (CpuSample(total=200, idle=0, own=66), 1),     # two busy processes beside us: 1.34 cores are theirs
    (CpuSample(total=200, idle=0, own=0), 1),      # every core taken by others: never below one thread
])
def test_threads_are_the_cores_others_left_between_one_and_the_ceiling(after, expected):
    assert threads_for(START, after, cpus=2, ceiling=2) == expected
    assert threads_for(START, after, cpus=2, ceiling=1) == 1


def test_counters_are_read_from_proc_stat_and_the_process_stat(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "stat").write_text("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    # pid (comm with ) a space) state ppid ... field 14 utime = 70, field 15 stime = 30
    (tmp_path / "self" / "stat").write_text("42 (my job) x) S 1 42 42 0 -1 4194304 10 0 0 0 70 30 0 0 20 0 3 0\n")
    assert read_sample(tmp_path) == CpuSample(total=100 + 5 + 50 + 800 + 20 + 1 + 2 + 3, idle=820, own=100)
    assert read_sample(tmp_path / "missing") is None


def test_the_governor_lowers_torchs_threads_under_load_and_gives_them_back(monkeypatch):
    monkeypatch.delenv("TANAS_FAIR_THREADS")  # the suite pins threads (conftest); this test is the governor's own
    original = torch.get_num_threads()
    monkeypatch.setattr(fair_threads, "_CEILING", 2)
    samples = iter([START, CpuSample(200, 0, 66), CpuSample(400, 200, 166)])
    monkeypatch.setattr(fair_threads, "read_sample", lambda: next(samples))
    governor = ThreadGovernor(interval=0.0, cpus=2)
    try:
        assert governor.adapt() is None  # the first look only takes a sample
        assert governor.adapt() == 1 and torch.get_num_threads() == 1
        assert governor.adapt() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("TANAS_FAIR_THREADS", "0")
        assert governor.adapt() is None
    finally:
        torch.set_num_threads(original)
