"""What a launch will cost here, before it starts: measured seconds per training step times the steps it needs.

Steps are timed on this machine (one warm-up step, then the median of a few, on a real batch size of the preset), so an
estimate is a measurement scaled by a count, not a guess; phases the step count leaves out (data loading, evaluation,
Fisher matrices) make it a lower bound, which the pages say.
"""
from __future__ import annotations

import functools
import random
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from tanas_core.data.suites import resolve_suite, resolve_target
from tanas_core.data.tasks import make_splits
from tanas_core.networks import build_network
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import SearchRequest, ValidateRequest
from tanas_core.search.cells import cell_network
from tanas_core.search.nas import preview_related_space
from tanas_core.search.space import standard_space
from tanas_core.training.trainer import get_preset, step_plan
from tanas_core.workspace.store import Workspace

CONFIRM_ABOVE_SECONDS = 600.0  # the pages ask for a confirmation above this estimate


def training_step(model: torch.nn.Module, batch: int, channels: int, size: int, device: str = "auto",
                  memory_format: torch.memory_format = torch.contiguous_format) -> Callable[[], None]:
    """One AdamW training step of ``model`` on a fixed random batch ``[batch, channels, size, size]``, as a function
    to time (weights and images in ``memory_format``; synchronised on CUDA so a timer sees the whole step)."""
    target = resolve_device(device)
    model = model.to(target, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, channels, size, size, device=target).contiguous(memory_format=memory_format)
    y = torch.randint(0, model.head.out_features, (batch,), device=target)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_steps(model: torch.nn.Module, batch: int, channels: int, size: int, device: str = "auto",
               steps: int = 2) -> float:
    """Median wall seconds of one AdamW training step of ``model`` on a random batch ``[batch, channels, size,
    size]`` (after one warm-up step)."""
    step = training_step(model, batch, channels, size, device)
    times = []
    for index in range(steps + 1):
        started = time.perf_counter()
        step()
        if index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


@functools.lru_cache(maxsize=32)
def cell_step_seconds(preset_name: str, channels: int, size: int, device: str = "auto") -> float:
    """Measured seconds per training step of a standard-space cell network at the preset's batch size (one random
    genotype; candidates of a space differ by their operations, this is their typical cost)."""
    torch.manual_seed(0)
    genotype = standard_space().sample(random.Random(0))
    return time_steps(cell_network(genotype, 10, channels), get_preset(preset_name).batch_size, channels, size,
                      device)


@functools.lru_cache(maxsize=32)
def network_step_seconds(preset_name: str, arch: str, channels: int, size: int, device: str = "auto",
                         steps: int | None = None) -> float:
    """Measured seconds per training step of a zoo network (``arch`` at the preset's width and batch size), the
    median of ``steps`` steps (default: 1 for the full-width ``paper`` preset, whose steps take seconds, else 2)."""
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    return time_steps(build_network(arch, 10, channels, preset.widths[arch]), preset.batch_size, channels, size,
                      device, steps=steps or (1 if preset_name == "paper" else 2))


def _fuse_steps(images: int, preset, budget) -> int:
    """Weight steps of one FUSE round (its step limit; convergence may stop it earlier)."""
    return step_plan(images, preset.batch_size, budget.epochs_per_round)[2]


def _fuse_seconds(rounds: int, steps: int, candidates: int, step: float, warmup: float) -> float:
    """A FUSE search's time: every step, one weight step per candidate; after the warm-up share, also one
    validation forward per candidate on half a batch (~1/6 of a step, ``fuse.alpha_batch``)."""
    searching = steps - int(warmup * steps)
    return rounds * candidates * step * (steps + searching / 6)


def search_estimate(workspace: Workspace, request: SearchRequest, device: str = "auto") -> dict:
    """``{seconds, step_s, parts: [(label, seconds)]}``: the training steps ``request`` will run (FUSE weight and
    alpha steps of every candidate, or each random candidate's epochs; the sub-searches of a related space whose
    closest tasks have no stored genotype; the winner's final training) x the measured step time."""
    suite, target = resolve_target(request.target, workspace)
    preset, budget = get_preset(request.preset), request.budget
    images = len(make_splits(target, preset.sizes, 0, suite.spec).indices["train"])
    step = cell_step_seconds(request.preset, suite.spec.channels, suite.spec.size, device)
    per_epoch, fuse_steps = step_plan(images, preset.batch_size, 1.0)[1], _fuse_steps(images, preset, budget)
    if request.method == "fuse":
        parts = [(f"FUSE: {budget.rounds} round(s) x {fuse_steps} steps x {budget.candidates} candidates",
                  _fuse_seconds(budget.rounds, fuse_steps, budget.candidates, step, budget.warmup))]
    else:
        parts = [(f"random search: {budget.random_candidates} candidates x {budget.random_epochs:g} epochs",
                  budget.random_candidates * budget.random_epochs * per_epoch * step)]
    if request.space == "related":
        preview = preview_related_space(workspace, request)
        missing = len(preview.missing) if preview is not None else request.closest.top
        if missing:
            parts.append((f"standard-space FUSE for {missing} closest task(s) without a stored genotype",
                          missing * _fuse_seconds(budget.rounds, fuse_steps, budget.candidates, step, budget.warmup)))
    if request.final_training:
        parts.append((f"final training: {budget.final_epochs:g} epochs", budget.final_epochs * per_epoch * step))
    return dict(seconds=sum(seconds for _, seconds in parts), step_s=step, parts=parts)


def zoo_network_estimate(preset_name: str, arch: str, suite_name: str, device: str = "auto",
                         workspace: Workspace | None = None, steps: int | None = None) -> dict:
    """``{step_s, steps, seconds}`` of training one zoo network of ``suite_name`` (its median task) with the
    preset: the measured step (the median of ``steps`` timed steps, ``network_step_seconds``) x (training images /
    batch x epochs)."""
    suite, preset = resolve_suite(suite_name, workspace), get_preset(preset_name)
    sizes = [len(make_splits(task, preset.sizes, 0, suite.spec).indices["train"]) for task in suite.tasks]
    network_steps = statistics.median(step_plan(count, preset.batch_size, preset.epochs_for(arch))[2]
                                      for count in sizes)
    step = network_step_seconds(preset_name, arch, suite.spec.channels, suite.spec.size, device, steps)
    return dict(step_s=step, steps=network_steps, seconds=step * network_steps)


def validation_estimate(workspace: Workspace, request: ValidateRequest, tasks: int) -> dict:
    """``{fishers, seconds, per_arch, unmeasured}`` of a validation report's Fisher matrices on this machine: the
    report's Fisher count times the median time of the Fishers this workspace computed per architecture (measured
    here, with the workspace's settings); ``seconds`` is ``None`` while an architecture has no measured Fisher
    (``unmeasured``). An upper bound for the Fishers (stored ones are reused) and a lower bound for the report
    (networks still to train come on top)."""
    measured: dict[str, list[float]] = {}
    for payload in workspace.list_results("fisher"):
        if payload.get("seconds"):
            measured.setdefault(payload["arch"], []).append(float(payload["seconds"]))
    per_arch = {arch: statistics.median(measured[arch]) for arch in request.archs if arch in measured}
    unmeasured = [arch for arch in request.archs if arch not in per_arch]
    fishers = request.fishers_needed(tasks)
    seconds = None if unmeasured else fishers / len(request.archs) * sum(per_arch.values())
    return dict(fishers=fishers, seconds=seconds, per_arch=per_arch, unmeasured=unmeasured)
