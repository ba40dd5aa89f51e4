"""Benchmarks that print side-by-side tables (medians of repeated runs, ratios measured in the same process)."""
from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .distance import frechet_distance
from .fisher import diagonal_fisher, fisher_factor, per_sample_gradients_loop, select_parameters


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(function: Callable[[], object]) -> float:
    """Peak extra memory of one run of ``function`` in MiB, after a warm-up run.

    CPU: the resident set size sampled every millisecond, minus its size before the run (approximate: PyTorch's
    allocator keeps and reuses memory). CUDA: ``torch.cuda.max_memory_allocated`` above the starting allocation.
    """
    function()  # warm-up: allocator, kernels, lazy initialisation
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        function()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - base) / 2 ** 20
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        function()
    finally:
        stop.set()
        sampler.join()
    return max(0, peak[0] - base) / 2 ** 20


def interleaved_medians(cases: list[tuple[str, Callable[[], object], int]]) -> dict[str, float]:
    """Median seconds per case, timing the cases round-robin (one run of each per round, ``runs`` rounds for a
    case) so that a slow spell of a noisy machine lands on every case rather than on one."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for round_index in range(max(runs for _, _, runs in cases)):
        for name, function, runs in cases:
            if round_index >= runs:
                continue
            started = time.perf_counter()
            function()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def vmap_per_sample_squares(model, inputs, targets, params: str = "backbone", batch_size: int = 64) -> torch.Tensor:
    """The plain ``torch.func`` way: ``vmap(grad)`` over samples, then square and average (for comparison)."""
    from torch.func import functional_call, grad, vmap

    model.eval()
    names = [name for name, _ in select_parameters(model, params)]
    trainable = {name: p.detach() for name, p in model.named_parameters() if name in names}
    frozen = {name: p.detach() for name, p in model.named_parameters() if name not in names}
    buffers = dict(model.named_buffers())

    def loss(weights, x, y):
        logits = functional_call(model, {**weights, **frozen, **buffers}, (x[None],))
        return F.cross_entropy(logits, y[None], reduction="sum")

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    total = torch.zeros(sum(p.numel() for p in trainable.values()), dtype=torch.float64)
    for start in range(0, len(inputs), batch_size):
        grads = per_sample(trainable, inputs[start:start + batch_size], targets[start:start + batch_size])
        total += torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], 1).double().pow(2).sum(0)
    return (total / len(inputs)).float()


def bench_fisher(model, inputs, targets, other_targets, repeats: int = 5, loop_repeats: int = 3) -> list[dict]:
    """Time the Fisher paths on ``model`` / ``inputs [M, ...]`` and return table rows with ratios to the floor.

    (a) floor: one batched forward + backward over the M samples; (b) brute-force per-sample loop; (c)
    ``diagonal_fisher``; (c') plain ``torch.func`` vmap; (d) the low-rank path for one baseline against a target
    whose own factor was computed beforehand (as in a distance matrix, where each target's factor serves every
    baseline): ``fisher_factor`` + its log-det term + the full Frechet distance, and each part alone.
    """
    from .distance import logdet_per_parameter

    model.eval()

    def floor():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets, reduction="sum").backward()

    target_factor = fisher_factor(model, inputs, other_targets)
    factor = fisher_factor(model, inputs, targets)

    def low_rank():
        own = fisher_factor(model, inputs, targets)
        return logdet_per_parameter(own, 1e-3), frechet_distance(own, target_factor)

    cases = [("(a) batched forward+backward (floor)", floor, repeats),
             ("(b) per-sample loop", lambda: per_sample_gradients_loop(model, inputs, targets), loop_repeats),
             ("(c) diagonal_fisher", lambda: diagonal_fisher(model, inputs, targets), repeats),
             ("(c') torch.func vmap(grad), for comparison", lambda: vmap_per_sample_squares(model, inputs, targets),
              repeats),
             ("(d) fisher_factor + log-det + full Frechet", low_rank, repeats),
             ("(d1)   fisher_factor alone", lambda: fisher_factor(model, inputs, targets), repeats),
             ("(d2)   log-det term of a factor (M x M Gram)", lambda: logdet_per_parameter(factor, 1e-3), repeats),
             ("(d3)   full Frechet of two factors", lambda: frechet_distance(factor, target_factor), repeats)]
    memory = {name: peak_memory(function) for name, function, _ in cases}  # also the warm-up of every case
    seconds = interleaved_medians(cases)
    rows = [dict(path=name, median_s=seconds[name], peak_extra_MiB=memory[name], runs=count)
            for name, _, count in cases]
    floor_seconds = rows[0]["median_s"]
    for row in rows:
        row["x_floor"] = row["median_s"] / floor_seconds
    return rows


APP_PAGES = ("app.py", "pages/1_Tasks.py", "pages/2_Zoo.py", "pages/3_Distances.py", "pages/4_Search.py")
# Widget values that point a page at the results the benchmark stored (label -> value).
_PAGE_SETTINGS = {"pages/3_Distances.py": {"Suite": "mnist4", "Preset": "smoke"},
                  "pages/4_Search.py": {"Suite": "mnist4", "Preset": "smoke"}}


def populate_for_pages(workspace) -> None:
    """Store what the pages show: the ``mnist4`` VGG zoo (smoke preset, 1 seed), its log-det distances with the
    pages' default Fisher settings, and a tiny finished FUSE search with its event stream."""
    from .fuse import SearchBudget
    from .nas import run_search
    from .task_distances import distance_matrices
    from .tasks import get_suite

    suite = get_suite("mnist4")
    distance_matrices(workspace, suite, "vgg16", "logdet", [0], "smoke")
    run_search(workspace, suite, suite.task("mnist-10class"), space="standard", method="fuse", preset="smoke",
               budget=SearchBudget(candidates=2, rounds=1, epochs_per_round=1, final_epochs=1))


def bench_pages(repo, repeats: int = 5) -> list[dict]:
    """Time AppTest runs of every page on the current workspace: a new session's first render (with the page's
    widgets pointed at stored results) and a rerun of it; medians over ``repeats`` sessions. ``ValueError`` when a
    page raises."""
    from streamlit.testing.v1 import AppTest

    rows = []
    for page in APP_PAGES:
        first, rerun = [], []
        for _ in range(repeats):
            app = AppTest.from_file(str(repo / page), default_timeout=120)
            started = time.perf_counter()
            app.run()
            settings = _PAGE_SETTINGS.get(page, {})
            for widget in app.selectbox:
                if widget.label in settings:
                    widget.set_value(settings[widget.label])
            if settings:
                started = time.perf_counter()  # the render that shows the stored results
                app.run()
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.run()
            rerun.append(time.perf_counter() - started)
            if app.exception:
                raise ValueError(f"{page} raised: {app.exception[0].message}")
        rows.append(dict(page=page, first_render_s=statistics.median(first), rerun_s=statistics.median(rerun),
                         slowest_s=max(first + rerun), goal_s=2.0, within_goal=max(first + rerun) <= 2.0))
    return rows


def bench_backends(suite_name: str = "ld8", seeds: int = 2, archs: tuple[str, ...] = ("vgg16", "resnet18",
                   "densenet121"), preset: str = "demo", ray_workers: int = 2,
                   on_event: Callable | None = None) -> list[dict]:
    """Train the same zoo from scratch twice, each in a throw-away workspace: with the local backend (this process)
    and on a local Ray of ``ray_workers`` CPUs (one CPU and one torch thread per task). Rows: ``{backend, networks,
    wall_s, median_network_s, sum_network_s}``; ``ratio`` (local wall / this wall) is added to each."""
    import tempfile

    from .backends import LocalBackend, RayBackend
    from .store import Workspace
    from .tasks import get_suite
    from .zoo import train_zoo

    suite = get_suite(suite_name)
    rows = []
    for backend in (LocalBackend(), RayBackend(num_cpus=ray_workers, cpus_per_task=1)):
        with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
            started = time.perf_counter()
            records = train_zoo(Workspace(scratch), suite, list(archs), list(range(seeds)), preset,
                                device="cpu", backend=backend, on_event=on_event)
            wall = time.perf_counter() - started
        per_network = [r.seconds for r in records]
        rows.append(dict(backend=backend.describe(), networks=len(records), wall_s=wall,
                         median_network_s=statistics.median(per_network), sum_network_s=sum(per_network)))
    for row in rows:
        row["ratio"] = rows[0]["wall_s"] / row["wall_s"]
    return rows


def paper_step_seconds(suite_name: str = "ld8", archs: tuple[str, ...] = ("vgg16", "resnet18", "densenet121"),
                       steps: int = 3) -> list[dict]:
    """Measured seconds per training step of the ``paper`` preset's full-width networks on this machine (median of
    ``steps`` steps after a warm-up one, a real batch of the preset's size), and the steps one network of each task
    needs (every training image, the preset's epochs). For projections; nothing is trained to the end."""
    from .networks import build_network
    from .tasks import get_suite
    from .training import get_preset

    paper = get_preset("paper")
    suite = get_suite(suite_name)
    sizes = {task.name: _training_images(task, paper, suite) for task in suite.tasks}
    rows = []
    for arch in archs:
        model = build_network(arch, 10, suite.spec.channels, paper.widths[arch])
        optimizer = torch.optim.AdamW(model.parameters(), lr=paper.lr, weight_decay=paper.weight_decay)
        x = torch.randn(paper.batch_size, suite.spec.channels, suite.spec.size, suite.spec.size)
        y = torch.randint(0, 10, (paper.batch_size,))
        times = []
        for index in range(steps + 1):
            started = time.perf_counter()
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if index:
                times.append(time.perf_counter() - started)
        step = statistics.median(times)
        network_steps = statistics.median((count // paper.batch_size) * paper.epochs_for(arch)
                                          for count in sizes.values())
        rows.append(dict(arch=arch, step_s=step, steps_per_network=network_steps,
                         network_hours=step * network_steps / 3600))
    return rows


def _training_images(task, preset, suite) -> int:
    from .tasks import make_splits

    return len(make_splits(task, preset.sizes, 0, suite.spec).tensors("train")[1])
