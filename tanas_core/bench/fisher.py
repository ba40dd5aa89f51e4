"""Fisher benchmarks: the exact per-sample Fisher against per-sample loops and ``torch.func``, and one ``F[b, t]``
with the previous and the current kernels (``bench fisher``, ``bench pair``)."""
from __future__ import annotations

import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from tanas_core.bench.timing import interleaved_medians, peak_memory, speedup_row
from tanas_core.data.suites import get_suite, resolve_suite
from tanas_core.data.tasks import make_splits
from tanas_core.distances.metrics import frechet_distance, logdet_per_parameter
from tanas_core.fisher.matrices import diagonal_fisher, fisher_factor, per_sample_gradients_loop, select_parameters
from tanas_core.fisher.target import KERNELS, Kernels, compute_target_fisher
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import FisherConfig, ZooRequest
from tanas_core.training.checkpoints import load_network, verify_checkpoint
from tanas_core.training.trainer import get_preset
from tanas_core.training.zoo import ensure_network, train_zoo
from tanas_core.workspace.backends import LocalBackend
from tanas_core.workspace.context import RunContext, quiet_context
from tanas_core.workspace.store import Workspace

# The layout ``compute_target_fisher`` used before its kernels last changed (head features in the default layout):
# what ``bench pair`` compares with.
PREVIOUS_KERNELS = Kernels(features_channels_last=False)


def vmap_per_sample_squares(model, inputs, targets, params: str = "backbone", batch_size: int = 64) -> torch.Tensor:
    """The plain ``torch.func`` way: ``vmap(grad)`` over samples, then square and average (for comparison)."""
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
                             alone=speedup_row(medians), side_by_side=speedup_row(side)))
    return dict(zoo_s=zoo_seconds, rows=rows)


def _repeated_pair(state, record, suite, target, preset, config, kernels, runs: int) -> tuple[list[float], object]:
    """One ``F[b, t]`` (warm-up: data caches, first-call allocations), then ``runs`` timed ones: (their seconds, as
    ``compute_target_fisher`` measures them, and the last Fisher)."""
    fisher, _ = compute_target_fisher(state, record, suite, target, preset, "diagonal", config, "cpu", kernels=kernels)
    seconds = []
    for _ in range(runs):
        fisher, took = compute_target_fisher(state, record, suite, target, preset, "diagonal", config, "cpu",
                                             kernels=kernels)
        seconds.append(took)
    return seconds, fisher
