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


def measure(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """``(median seconds, peak extra memory in MiB)`` over ``repeats`` runs.

    Memory is the resident set size sampled every millisecond during the runs, minus the size before them (CUDA:
    ``torch.cuda.max_memory_allocated`` above the starting allocation); it is approximate on the CPU.
    """
    function()  # warm-up: allocator, kernels, lazy initialisation
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = None if cuda else threading.Thread(target=sample, daemon=True)
    if sampler:
        sampler.start()
    times = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    finally:
        stop.set()
        if sampler:
            sampler.join()
    extra = (torch.cuda.max_memory_allocated() if cuda else peak[0]) - base
    return statistics.median(times), max(0, extra) / 2 ** 20


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


def bench_fisher(model, inputs, targets, other_targets, repeats: int = 5, loop_repeats: int = 1) -> list[dict]:
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
    rows = []
    for name, function, count in cases:
        seconds, memory = measure(function, count)
        rows.append(dict(path=name, median_s=seconds, peak_extra_MiB=memory, runs=count))
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
