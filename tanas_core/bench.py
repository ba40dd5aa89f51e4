"""Benchmarks and their analysis, as rows and dicts the CLI prints (medians of repeated runs, ratios measured in the
same process, goals met or not, projections labelled as such)."""
from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .distance import frechet_distance
from .fisher import diagonal_fisher, fisher_factor, per_sample_gradients_loop, select_parameters
from .errors import TanasError


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


def fisher_setup(samples: int = 256, device: str = "auto") -> dict:
    """The model and data of ``bench fisher``: a demo-preset VGG-16 trained on ld8's 10-class CIFAR-10 (in a
    throw-away workspace) and its first ``samples`` real training images: ``{model, inputs, targets,
    other_targets, params, backbone_params, device}``."""
    from .context import quiet_context
    from .store import Workspace
    from .tasks import make_splits
    from .suites import get_suite
    from .training import get_preset, resolve_device
    from .zoo import ensure_network, load_network

    device = resolve_device(device)
    preset, suite = get_preset("demo"), get_suite("ld8")
    task = suite.task("cifar10-10class")
    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        context = quiet_context(Workspace(scratch), device=str(device))
        record, _ = ensure_network(context, suite, task, "vgg16", preset, 0)
        model = load_network(context.workspace, record, device)
    images, labels = make_splits(task, preset.sizes, 0, suite.spec).tensors("train")
    targets = labels[:samples].to(device)
    return dict(model=model, inputs=images[:samples].to(device), targets=targets,
                other_targets=torch.roll(targets, 1), params=record.params, device=device,
                backbone_params=sum(p.numel() for _, p in select_parameters(model, "backbone")))


def fisher_goals(rows: list[dict], samples: int, backbone_params: int) -> dict:
    """What ``bench_fisher`` rows mean: the M x M Gram's GFLOP and rate, and the goals met or not.

    ``{gram_gflop, gram_gflops_per_s, grams_x_floor, goals: [{goal, value, met}]}``: (c) within 2x the floor,
    (c) at least 5x faster than the per-sample loop (b), (d) within 4x the floor."""
    by_name = {row["path"].split()[0]: row for row in rows}
    diag, loop, low, gram = by_name["(c)"], by_name["(b)"], by_name["(d)"], by_name["(d2)"]
    gram_flops = 2 * samples ** 2 * backbone_params  # float64 Gram of an M x n factor: 2 M^2 n
    speedup = loop["median_s"] / diag["median_s"]
    return dict(gram_gflop=gram_flops / 1e9, gram_gflops_per_s=gram_flops / gram["median_s"] / 1e9,
                grams_x_floor=2 * gram["x_floor"],
                goals=[dict(goal="(c) <= 2x floor", value=f"{diag['x_floor']:.2f}x", met=diag["x_floor"] <= 2),
                       dict(goal="(c) >= 5x faster than (b)", value=f"{speedup:.1f}x", met=speedup >= 5),
                       dict(goal="(d) <= 4x floor", value=f"{low['x_floor']:.2f}x", met=low["x_floor"] <= 4)])


ZOO_GOAL_SECONDS = 300.0


def bench_zoo(request, run, **sinks) -> dict:
    """Train ``request``'s zoo (a ``ZooRequest``) from scratch in a throw-away workspace with ``run``
    (``RunSettings``): ``{records, rows, per_arch: [{arch, median_s, sum_s}], total_s, goal_s, met}``; the total
    includes data preparation and evaluation."""
    from .store import Workspace
    from .zoo import train_zoo

    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        started = time.perf_counter()
        records = train_zoo(request, run.context(Workspace(scratch), **sinks))
        total = time.perf_counter() - started
    rows = [dict(task=r.task, arch=r.arch, seed=r.seed, test_acc=f"{r.test_accuracy:.4f}",
                 eps_ok="yes" if r.is_epsilon_approximation else "NO", params=f"{r.params:,}",
                 seconds=f"{r.seconds:.1f}", device=r.device) for r in records]
    per_arch = [dict(arch=arch, median_s=statistics.median(seconds), sum_s=sum(seconds))
                for arch in sorted({r.arch for r in records})
                for seconds in [[r.seconds for r in records if r.arch == arch]]]
    return dict(records=records, rows=rows, per_arch=per_arch, total_s=total, goal_s=ZOO_GOAL_SECONDS,
                met=total <= ZOO_GOAL_SECONDS)


def bench_distances(suite: str, archs: tuple[str, ...], samples: list[int], replicates: int = 2,
                    bootstrap: int = 40, **sinks) -> dict:
    """One seed's TA-NAS distance matrices (``logdet``, ``replicates`` replicates, ``bootstrap`` resamples) of
    ``suite`` per architecture at each M of ``samples``, in a throw-away workspace whose zoo is trained first (its
    time reported apart). ``{zoo_s, rows: [{arch, M, fishers, seconds, s_per_fisher, x_first_M}]}``; every M
    computes its Fishers afresh (the Fisher cache is keyed by M)."""
    from .context import RunContext
    from .requests import DistanceRequest, FisherConfig, ZooRequest
    from .store import Workspace
    from .task_distances import distance_matrices
    from .zoo import train_zoo

    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        cases = [(arch, m) for arch in archs for m in samples]
        phases = RunContext(Workspace(scratch), device="cpu", **sinks).step_phases(
            ["zoo and replicates", *(f"{arch}, M = {m}" for arch, m in cases)])
        started = time.perf_counter()
        train_zoo(ZooRequest(suite=suite, archs=archs, seeds=1, replicates=replicates, workers=2), phases[0])
        zoo_seconds, rows = time.perf_counter() - started, []
        for (arch, m), phase in zip(cases, phases[1:]):
            # the TA-NAS view: the most Fishers per matrix (T per network), where M's cost shows
            request = DistanceRequest(suite=suite, archs=(arch,), seeds=1, metric="logdet", replicates=replicates,
                                      bootstrap=bootstrap, view="tanas", fisher=FisherConfig(samples=m))
            started = time.perf_counter()
            [result] = distance_matrices(request, phase)
            seconds = time.perf_counter() - started
            fishers = len(result.tasks) * (len(result.tasks) + replicates)
            rows.append(dict(arch=arch, M=m, fishers=fishers, seconds=seconds, s_per_fisher=seconds / fishers))
    for row in rows:
        first = next(r for r in rows if r["arch"] == row["arch"])
        row["x_first_M"] = row["seconds"] / first["seconds"]
    return dict(zoo_s=zoo_seconds, rows=rows)


def bench_pair(suite: str = "ld8", archs: tuple[str, ...] = ("vgg16", "resnet18", "densenet121"),
               baseline: str = "mnist-digit0", target: str = "cifar10-car-cat-ship", runs: int = 3,
               **sinks) -> dict:
    """One ``F[b, t]`` of the default report per architecture (``target_fisher.compute_target_fisher``: head features,
    head fit, Fisher at the default ``FisherConfig``) with the previous kernels and the current ones
    (``target_fisher.Kernels``), ``runs`` times each after a warm-up, one torch thread per process:

    * ``alone``: in this process, the two settings round-robin;
    * ``side by side``: in two worker processes at once, each computing the pair (as a report with ``--workers 2``
      runs: two Fishers share the caches and the memory bus), first with the previous kernels, then the current.

    The baseline networks (demo preset, seed 0) are trained first in a throw-away workspace, their time reported
    apart. ``{zoo_s, rows: [{arch, alone: {previous_s, current_s, speedup}, side_by_side: {...}, max_rel_diff}]}``;
    ``max_rel_diff``: the largest difference between the two settings' Fishers over the largest entry."""
    from .backends import LocalBackend
    from .context import RunContext
    from .requests import FisherConfig, ZooRequest
    from .store import Workspace
    from .suites import resolve_suite
    from .target_fisher import KERNELS, PREVIOUS_KERNELS, compute_target_fisher
    from .training import get_preset
    from .zoo import train_zoo, verify_checkpoint

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
        workspace = Workspace(scratch)
        started = time.perf_counter()
        records = train_zoo(ZooRequest(suite=suite, archs=archs, seeds=1, tasks=(baseline,), workers=2),
                            RunContext(workspace, device="cpu", **sinks))
        zoo_seconds = time.perf_counter() - started
        the_suite, preset, config = resolve_suite(suite, workspace), get_preset("demo"), FisherConfig()
        [task] = [t for t in the_suite.tasks if t.name == target]
        rows, workers = [], LocalBackend(2)
        for record in records:
            state = verify_checkpoint(workspace, record)
            settings = dict(previous=PREVIOUS_KERNELS, current=KERNELS)

            def one_pair(kernels, record=record, state=state):
                return compute_target_fisher(state, record, the_suite, task, preset, "diagonal", config, "cpu",
                                             kernels=kernels)[0]

            torch.set_num_threads(1)
            try:
                alone = {name: one_pair(kernels) for name, kernels in settings.items()}  # warm-up, and the Fishers
                medians = interleaved_medians([(name, lambda k=kernels: one_pair(k), runs)
                                               for name, kernels in settings.items()])
            finally:
                torch.set_num_threads(threads)
            shared = workers.put(state)  # serialised once for the four items
            items = [(shared, record, the_suite, task, preset, config, settings[name], runs)
                     for name in ("previous", "previous", "current", "current")]
            seconds = {"previous": [], "current": []}
            for index, (times, _) in workers.map(_repeated_pair, items):
                seconds["previous" if index < 2 else "current"] += times
            side = {name: statistics.median(values) for name, values in seconds.items()}
            previous, current = alone["previous"].double(), alone["current"].double()
            rows.append(dict(arch=record.arch, max_rel_diff=float((previous - current).abs().max()
                                                                   / previous.abs().max()),
                             alone=_speedup(medians), side_by_side=_speedup(side)))
    return dict(zoo_s=zoo_seconds, rows=rows)


def _speedup(medians: dict[str, float]) -> dict[str, float]:
    return dict(previous_s=medians["previous"], current_s=medians["current"],
                speedup=medians["previous"] / medians["current"])


def _repeated_pair(state, record, suite, target, preset, config, kernels, runs: int) -> tuple[list[float], object]:
    """One ``F[b, t]`` (warm-up: data caches, first-call allocations), then ``runs`` timed ones: (their seconds, as
    ``compute_target_fisher`` measures them, and the last Fisher)."""
    from .target_fisher import compute_target_fisher

    fisher, _ = compute_target_fisher(state, record, suite, target, preset, "diagonal", config, "cpu", kernels=kernels)
    seconds = []
    for _ in range(runs):
        fisher, took = compute_target_fisher(state, record, suite, target, preset, "diagonal", config, "cpu",
                                             kernels=kernels)
        seconds.append(took)
    return seconds, fisher


APP_PAGES = ("app.py", "pages/1_Tasks.py", "pages/2_Zoo.py", "pages/3_Distances.py", "pages/4_Search.py")
# Widget values that point a page at the results the benchmark stored (label -> value).
_PAGE_SETTINGS = {"pages/3_Distances.py": {"Suite": "mnist4", "Preset": "smoke"},
                  "pages/4_Search.py": {"Suite": "mnist4", "Preset": "smoke"}}


def populate_for_pages(workspace) -> None:
    """Store what the pages show: the ``mnist4`` VGG zoo (smoke preset, 1 seed), its distances (default metric) with the
    pages' default Fisher settings, and a tiny finished FUSE search with its event stream."""
    from .context import quiet_context
    from .nas import run_search
    from .requests import DistanceRequest, SearchBudget, SearchRequest
    from .task_distances import distance_matrices

    context = quiet_context(workspace)
    distance_matrices(DistanceRequest(suite="mnist4", archs=("vgg16",), seeds=1, preset="smoke"), context)
    run_search(SearchRequest(target="mnist4:mnist-10class", space="standard", method="fuse", preset="smoke",
                             budget=SearchBudget(candidates=2, rounds=1, epochs_per_round=1, final_epochs=1)), context)


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
                raise TanasError(f"{page} raised: {app.exception[0].message}")
        rows.append(dict(page=page, first_render_s=statistics.median(first), rerun_s=statistics.median(rerun),
                         slowest_s=max(first + rerun), goal_s=2.0, within_goal=max(first + rerun) <= 2.0))
    return rows


def bench_backends(suite_name: str = "ld8", seeds: int = 2, archs: tuple[str, ...] = ("vgg16", "resnet18",
                   "densenet121"), preset: str = "demo", ray_workers: int = 2, **sinks) -> list[dict]:
    """Train the same zoo from scratch twice, each in a throw-away workspace: with the local backend (this process)
    and on a local Ray of ``ray_workers`` CPUs (one CPU and one torch thread per task). Rows: ``{backend, networks,
    wall_s, median_network_s, sum_network_s}``; ``ratio`` (local wall / this wall) is added to each. ``sinks``:
    ``on_progress`` / ``on_event`` of the runs' ``RunContext``."""
    from .backends import LocalBackend, RayBackend
    from .context import RunContext
    from .requests import ZooRequest
    from .store import Workspace
    from .zoo import train_zoo

    request = ZooRequest(suite=suite_name, archs=tuple(archs), seeds=seeds, preset=preset)
    rows = []
    for backend in (LocalBackend(), RayBackend(num_cpus=ray_workers, cpus_per_task=1)):
        with tempfile.TemporaryDirectory(prefix="tanas-bench-") as scratch:
            started = time.perf_counter()
            records = train_zoo(request, RunContext(Workspace(scratch), device="cpu", backend=backend, **sinks))
            wall = time.perf_counter() - started
        per_network = [r.seconds for r in records]
        rows.append(dict(backend=backend.describe(), networks=len(records), wall_s=wall,
                         median_network_s=statistics.median(per_network), sum_network_s=sum(per_network)))
    for row in rows:
        row["ratio"] = rows[0]["wall_s"] / row["wall_s"]
    return rows


def paper_projection(suite_name: str, archs: tuple[str, ...], steps: list[dict], speedup: float,
                     machines: tuple[int, ...] = (1, 8, 32), seeds: int = 10) -> dict:
    """PROJECTION (not a measurement) of the paper zoo (``seeds`` seeds of every task x architecture) from
    ``paper_step_seconds`` rows: ``{tasks, networks, hours, walls: [{machines, hours}]}``, walls assuming Ray
    clusters of such machines that each train ``speedup`` x as fast as one network at a time."""
    from .suites import get_suite

    tasks = len(get_suite(suite_name).tasks)
    hours = sum(r["network_hours"] for r in steps) * tasks * seeds
    return dict(tasks=tasks, networks=tasks * seeds * len(archs), hours=hours,
                walls=[dict(machines=count, hours=hours / (count * speedup)) for count in machines])


def paper_step_seconds(suite_name: str = "ld8", archs: tuple[str, ...] = ("vgg16", "resnet18", "densenet121"),
                       steps: int = 3) -> list[dict]:
    """Measured seconds per training step of the ``paper`` preset's full-width networks on this machine (median of
    ``steps`` steps after a warm-up one, a batch of the preset's size: ``estimates.zoo_network_estimate``), and the
    steps one network of the suite's median task needs (every training image, the preset's epochs). For
    projections; nothing is trained to the end."""
    from .estimates import zoo_network_estimate

    rows = []
    for arch in archs:
        cost = zoo_network_estimate("paper", arch, suite_name, steps=steps)
        rows.append(dict(arch=arch, step_s=cost["step_s"], steps_per_network=cost["steps"],
                         network_hours=cost["seconds"] / 3600))
    return rows


def bench_cells(preset_name: str = "demo", channels: int = 3, size: int = 32, runs: int = 7) -> dict:
    """Training-step time per image of cell networks against the demo VGG-16 at the preset's batch size, in both
    memory layouts: a standard-space genotype (what search candidates cost) and networks of one operation each
    (depthwise-separable, dilated and the 7x1/1x7 convolution). Cases are timed round-robin (``interleaved_medians``).
    Returns ``{batch, threads, rows: [{network, layout, ms_per_image, x_vgg, x_contiguous}]}``."""
    from .estimates import training_step
    from .networks import build_network
    from .networks.cells import cell_network
    from .search_space import Cell, Genotype, standard_space
    from .training import get_preset

    preset = get_preset(preset_name)
    space = standard_space()
    networks = {f"VGG-16 ({preset.widths['vgg16']:g} width)": lambda: build_network("vgg16", 10, channels,
                                                                                   preset.widths["vgg16"]),
                "cell network (standard-space sample)": lambda: cell_network(space.sample(random.Random(0)), 10,
                                                                             channels)}
    for op in ("sep_conv_3x3", "dil_conv_3x3", "conv_7x1_1x7"):
        cell = Cell(tuple(((op, 0), (op, 1)) for _ in range(space.nodes)))
        networks[f"cells of {op} only"] = lambda cell=cell: cell_network(Genotype(cell, cell, space.skeleton), 10,
                                                                          channels)
    cases = []
    for name, make in networks.items():
        for layout, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            torch.manual_seed(0)
            step = training_step(make(), preset.batch_size, channels, size, "cpu", memory_format)
            step()  # warm-up: allocations, kernel choice
            cases.append(((name, layout), step, runs))
    medians = interleaved_medians(cases)
    vgg = medians[(next(iter(networks)), "contiguous")]
    rows = [dict(network=name, layout=layout, ms_per_image=1000 * seconds / preset.batch_size,
                 x_vgg=seconds / vgg, x_contiguous=seconds / medians[(name, "contiguous")])
            for (name, layout), seconds in medians.items()]
    return dict(batch=preset.batch_size, threads=torch.get_num_threads(), rows=rows)
