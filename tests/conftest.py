"""Shared fixtures: the real offline data pack, a throw-away workspace, a tiny training preset."""
from __future__ import annotations

import os

# Set before anything imports torch (libgomp reads it once, when torch loads it). The suite pins torch's threads
# (``isolated_home``), and on a busy machine a pinned OpenMP thread spins at each parallel region's end while its
# partner waits for a core, burning the slice the partner needs. A short spin sleeps soon there and keeps the idle
# speed (``python -m tanas_core bench load --job tests``; docs/results/benchmarks.md).
from tanas_core.bench.load import SHORT_SPIN, start_busy, stop_busy  # no torch in it

os.environ.setdefault("GOMP_SPINCOUNT", SHORT_SPIN)

from pathlib import Path

import pytest

from tanas_core.data.tasks import SplitSizes
from tanas_core.training.trainer import PRESETS, Preset
from tanas_core.workspace.store import Workspace

REPO = Path(__file__).resolve().parents[1]
SMALL_FISHER = dict(samples=32, head_samples=64)  # the populated workspace's Fisher settings


def _find_real_data() -> Path | None:
    for candidate in (os.environ.get("TANAS_DATA_DIR"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "mnist.npz").is_file():
            return Path(candidate).resolve()
    return None


REAL_DATA = _find_real_data()
TIERS = ("unit", "integration", "e2e")


def pytest_addoption(parser):
    parser.addoption("--busy", type=int, default=0, metavar="N",
                     help="run the suite beside N busy processes (a Python loop each; `make test-under-load` uses one "
                          "per core), as on a shared machine: tests must pass there too")


def pytest_configure(config):
    """Start the ``--busy`` processes for the whole session; ``pytest_unconfigure`` stops them by their PIDs."""
    count = config.getoption("busy", 0)
    if count < 0:
        raise pytest.UsageError(f"--busy must be 0 or more busy processes, got {count}")
    config._busy_processes = start_busy(count) if count else []


def pytest_unconfigure(config):
    stop_busy(getattr(config, "_busy_processes", []))


def pytest_report_header(config):
    processes = getattr(config, "_busy_processes", [])
    if processes:
        return f"beside {len(processes)} busy processes (PIDs {', '.join(str(p.pid) for p in processes)})"
    return None


def pytest_collection_modifyitems(config, items):
    """A test without a tier marker is an integration test: the unit tier is opted into, test by test."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own TANAS_HOME; the real data directory (when present) stays visible. Torch's threads stay
    as the test set them (no load-following governor): tests compare results bit for bit across backends."""
    monkeypatch.setenv("TANAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TANAS_FAIR_THREADS", "0")
    if REAL_DATA is not None:
        monkeypatch.setenv("TANAS_DATA_DIR", str(REAL_DATA))
    else:
        monkeypatch.delenv("TANAS_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The offline data pack (CI always has it); tests that need it skip elsewhere, saying why."""
    if REAL_DATA is None:
        pytest.skip("real data pack not found: set TANAS_DATA_DIR to a directory holding mnist.npz etc. "
                    "(CI uses ../shared/datasets)")
    return REAL_DATA


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "workspace")


@pytest.fixture
def tiny_preset(monkeypatch) -> Preset:
    """A preset that trains in about a second: 200 training images, narrow networks, one epoch. Registered as
    ``"tiny"`` for the test, so requests can name it."""
    preset = Preset(name="tiny", sizes=SplitSizes(train=200, val=60, test=100),
                  widths={"vgg16": 0.0625, "resnet18": 0.0625, "densenet121": 0.0625}, epochs=1, batch_size=32,
                    lr=0.01, weight_decay=0.01, epsilon=0.5, description="tests only")
    monkeypatch.setitem(PRESETS, "tiny", preset)
    return preset


@pytest.fixture(scope="session")
def populated_root(tmp_path_factory, real_data):
    """Built once per session: a workspace with a 4-task zoo (VGG, 1 seed, smoke preset) and its log-det distances
    (Fishers of ``SMALL_FISHER``); tests copy it before they change it."""
    from tanas_core.distances.matrices import distance_matrices
    from tanas_core.requests import DistanceRequest, FisherConfig
    from tanas_core.workspace.context import quiet_context

    root = tmp_path_factory.mktemp("populated") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TANAS_DATA_DIR", str(real_data))
        request = DistanceRequest(suite="mnist4", archs=("vgg16",), preset="smoke", fisher=FisherConfig(**SMALL_FISHER))
        (result,) = distance_matrices(request, quiet_context(Workspace(root), "cpu"))
    return root, result
