"""Workload benchmarks: the zoo, distance matrices, backends, cell networks and the paper-scale projection
(``bench zoo``, ``bench distances``, ``bench backends``, ``bench cells``)."""
from __future__ import annotations

import random
import statistics
import tempfile
import time

import torch

from tanas_core.bench.timing import interleaved_medians
from tanas_core.data.suites import get_suite
from tanas_core.distances.matrices import distance_matrices
from tanas_core.jobs.estimates import training_step, zoo_network_estimate
from tanas_core.networks import build_network
from tanas_core.requests import DistanceRequest, FisherConfig, ZooRequest
from tanas_core.search.cells import cell_network
from tanas_core.search.space import Cell, Genotype, standard_space
from tanas_core.training.trainer import get_preset
from tanas_core.training.zoo import train_zoo
from tanas_core.workspace.backends import LocalBackend
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.ray_backend import RayBackend
from tanas_core.workspace.store import Workspace

ZOO_GOAL_SECONDS = 300.0


def bench_zoo(request, run, **sinks) -> dict:
    """Train ``request``'s zoo (a ``ZooRequest``) from scratch in a throw-away workspace with ``run``
    (``RunSettings``): ``{records, rows, per_arch: [{arch, median_s, sum_s}], total_s, goal_s, met}``; the total
    includes data preparation and evaluation."""
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


def bench_backends(suite_name: str = "ld8", seeds: int = 2, archs: tuple[str, ...] = ("vgg16", "resnet18",
                   "densenet121"), preset: str = "demo", ray_workers: int = 2, **sinks) -> list[dict]:
    """Train the same zoo from scratch twice, each in a throw-away workspace: with the local backend (this process)
    and on a local Ray of ``ray_workers`` CPUs (one CPU and one torch thread per task). Rows: ``{backend, networks,
    wall_s, median_network_s, sum_network_s}``; ``ratio`` (local wall / this wall) is added to each. ``sinks``:
    ``on_progress`` / ``on_event`` of the runs' ``RunContext``."""
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
