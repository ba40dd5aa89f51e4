"""FUSE (the source document's Algorithm 1) and the random-search baseline, on a ``SearchSpace``.

FUSE, one round: sample C candidates (the incumbent stays one of them) and relax their outputs into

    c_bar(X) = sum_c softmax(alpha)_c * c(X)                                      (equation 16)

then alternate (i) alpha frozen: one step on the candidates' weights on a training batch (equation 17, see below);
(ii) weights frozen: one step on alpha, descending L_val(alpha; w, c_bar) on a validation batch of half a training
batch (equation 18; none during the warm-up, below); until alpha converges (the softmax weights move less than
``tolerance`` over ``window`` steps) on a candidate whose validation accuracy over those steps beats the runner-up's
beyond their noise (``convergence.separated``), or the round's step limit. The winner is argmax alpha (equation 19;
Algorithm 1's "argmin" is a typo of the slides). ``rounds`` rounds, then the winner is trained from scratch by the
caller.

Two choices, both measured on a constructed case (one candidate crippled to a constant output, see the tests):

* "Output" is taken as the class probabilities, so L_val is a mixture likelihood. Its gradient in alpha_c is
  ``softmax(alpha)_c - mean responsibility_c`` (the share of the validation labels candidate c explains best), and
  plain SGD on alpha has the EM fixed point softmax(alpha) = mean responsibilities: alpha converges, and toward the
  candidate that predicts best on its own, which is what the winner must do when it is trained alone. The alpha
  step evaluates the candidates in eval mode without gradients: C forward passes, no backward pass.
* The weight step (``budget.weight_step="independent"``, the default) gives every candidate its own cross-entropy
  on the same training batch. Taken literally (``weight_step="relaxed"``), equation 17 scales candidate c's gradient
  by its softmax weight, so a candidate that falls behind early learns less and alpha then ranks head starts, not
  architectures: on the constructed case the runner-up ends almost level with the crippled candidate (softmax
  weights 0.106 vs 0.098; 0.196 vs 0.123 with independent steps). ``relaxed`` stays selectable, as does
  ``budget.mixture="logits"`` (mix the candidates' logits, then softmax).

A short ``warmup`` share of each round trains the weights before alpha moves, so alpha does not judge candidates on
their random initialisation.

The functions here see only the training and validation tensors they are given: the test split cannot leak into a
search. Every alpha update (FUSE) or trained candidate (random search) is reported to ``on_event`` as a plain dict.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tanas_core.errors import Cancelled, TanasError
from tanas_core.intervals import paired_difference
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import SearchBudget
from tanas_core.search.cells import cell_network
from tanas_core.search.convergence import alpha_settled, separated
from tanas_core.search.space import Genotype, SearchSpace
from tanas_core.training.trainer import Preset, one_cycle, step_plan
from tanas_core.workspace.context import RunContext

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass
class FuseRound:
    """One FUSE round: its candidates, final alpha and softmax weights, steps run, convergence, winner index and
    ``decision`` (``_Mixture.decision``: is the winner better than the runner-up on the validation images, beyond
    their noise? ``None`` when the round was cancelled)."""

    candidates: list[Genotype]
    alpha: list[float]
    weights: list[float]
    steps: int
    converged: bool
    winner: int
    decision: dict | None = None


@dataclass
class SearchOutcome:
    """What a search chose and how. ``status``: ``"done"`` (``best`` is the winner; a search that hit
    ``budget.max_seconds`` is done with the best so far, ``ended="time limit"``), ``"time limit"`` (the limit passed
    before anything could be chosen: ``best`` is ``None``) or ``"stopped"`` (cancelled: ``best`` is the best so far or
    ``None``, the caller raises ``Cancelled`` after keeping the partial history)."""

    method: str
    best: Genotype | None
    status: str
    seconds: float
    device: str
    rounds: list = None
    evaluated: list = None  # random search: [{genotype, val_accuracy, seconds}]
    ended: str = "finished"


def relaxed_log_probs(outputs: torch.Tensor, weights: torch.Tensor, mixture: str = "probs") -> torch.Tensor:
    """Log class probabilities ``[N, classes]`` of the relaxed output c_bar for candidate logits ``outputs [C, N,
    classes]`` and softmax weights ``weights [C]``: ``"logits"`` mixes the logits (then softmax), ``"probs"`` mixes
    the class probabilities."""
    if mixture == "logits":
        return F.log_softmax((outputs * weights[:, None, None]).sum(0), dim=1)
    if mixture == "probs":
        return torch.logsumexp(F.log_softmax(outputs, dim=2) + weights.log()[:, None, None], dim=0)
    raise TanasError(f"mixture must be 'logits' or 'probs', got {mixture!r}")


class _Batches:
    """Epoch-wise shuffled batches of a split (ragged tail dropped), drawn from one generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, generator: torch.Generator, device):
        self.x, self.y, self.batch, self.generator, self.device = x, y, batch, generator, device
        self.per_epoch = max(1, len(y) // batch)
        self.order = torch.randperm(len(y), generator=generator)

    def train_batch(self, step: int) -> Tensors:
        """Step ``step`` (1-based) of consecutive epochs, reshuffled at every epoch start."""
        position = ((step - 1) % self.per_epoch) * self.batch
        if position == 0 and step > 1:
            self.order = torch.randperm(len(self.y), generator=self.generator)
        index = self.order[position: position + self.batch]
        return self.x[index].to(self.device), self.y[index].to(self.device)

    def val_batch(self, step: int) -> Tensors:
        """A sliding window over one fixed permutation (the alpha steps see every validation image in turn)."""
        start = ((step - 1) * self.batch) % max(1, len(self.y) - self.batch + 1)
        index = self.order[start: start + self.batch]
        return self.x[index].to(self.device), self.y[index].to(self.device)


class _Mixture:
    """One FUSE round's candidates, their weights' optimiser and alpha (equations 16-18)."""

    def __init__(self, models: list[nn.Module], preset: Preset, budget: SearchBudget, step_limit: int, device):
        self.models, self.mixture, self.weight_step = models, budget.mixture, budget.weight_step
        self.alpha = torch.zeros(len(models), device=device, requires_grad=True)
        self.weight_optimizer = torch.optim.AdamW([p for m in models for p in m.parameters()], lr=preset.lr,
                                                  weight_decay=preset.weight_decay)
        self.schedule = one_cycle(self.weight_optimizer, preset.lr, step_limit)
        self.alpha_optimizer = torch.optim.SGD([self.alpha], lr=budget.alpha_lr)

    def weights(self) -> torch.Tensor:
        return F.softmax(self.alpha.detach(), 0).cpu()

    def weight_step_on(self, inputs: torch.Tensor, targets: torch.Tensor,
                       check: Callable[[], None] | None = None) -> float:
        """(i) alpha frozen: one step on every candidate's weights; returns the relaxed training loss. Independent
        steps run candidate by candidate (the same gradients: each loss reaches only its own weights) with
        ``check()`` between them, so a cancel does not wait for a whole step of dozens of candidates."""
        for model in self.models:
            model.train()
        self.weight_optimizer.zero_grad(set_to_none=True)
        if self.weight_step == "relaxed":
            outputs = torch.stack([model(inputs) for model in self.models])
            train_loss = F.nll_loss(relaxed_log_probs(outputs, F.softmax(self.alpha.detach(), 0), self.mixture),
                                    targets)
            train_loss.backward()
        else:
            detached = []
            for model in self.models:
                if check is not None:
                    check()
                output = model(inputs)
                F.cross_entropy(output, targets).backward()
                detached.append(output.detach())
            with torch.no_grad():
                train_loss = F.nll_loss(relaxed_log_probs(torch.stack(detached), F.softmax(self.alpha, 0),
                                                          self.mixture), targets)
        self.weight_optimizer.step()
        self.schedule.step()
        return float(train_loss.detach())

    def alpha_step_on(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
        """(ii) weights frozen: the relaxed validation loss and one SGD step on alpha."""
        with torch.no_grad():
            for model in self.models:
                model.eval()
            outputs = torch.stack([model(inputs) for model in self.models])
        relaxed = relaxed_log_probs(outputs, F.softmax(self.alpha, 0), self.mixture)
        val_loss = F.nll_loss(relaxed, targets)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        val_loss.backward()
        self.alpha_optimizer.step()
        return dict(val_loss=float(val_loss.detach()),
                    val_accuracy=float((relaxed.argmax(1) == targets).float().mean()),
                    candidate_val_accuracy=(outputs.argmax(2) == targets).float().mean(1).tolist())

    def decision(self, winner: int, inputs: torch.Tensor, targets: torch.Tensor, batch: int) -> dict:
        """Does the round's ``winner`` (argmax alpha) beat the runner-up (the largest alpha of the others, the
        first on a tie) on every validation image ``inputs [N, C, H, W]``, ``targets [N]``? ``{runner_up (index),
        mean, low, high, n, verdict}``: the paired difference of their per-image cross-entropies (runner-up minus
        winner, nats) with its 95 % t-interval; verdict ``"decided"`` (the interval is above 0), ``"tie"`` (it
        reaches 0: alpha's choice is inside the noise of the validation images) or ``"reversed"`` (the runner-up
        validates better). Alpha converging says it stopped moving, not that it chose: two equal candidates converge
        to a tie."""
        # The winner is passed in, not ranked again: with equal alphas (a round cut in its warm-up) a descending
        # sort can disagree with argmax and name the winner itself as the runner-up.
        alpha = self.alpha.detach()
        runner_up = max((c for c in range(len(self.models)) if c != winner), key=lambda c: float(alpha[c]))
        device = self.alpha.device
        losses = []
        with torch.no_grad():
            for model in (self.models[runner_up], self.models[winner]):
                model.eval()
                losses.append(torch.cat([F.cross_entropy(model(inputs[i:i + batch].to(device)),
                                                         targets[i:i + batch].to(device), reduction="none").cpu()
                                         for i in range(0, len(targets), batch)]))
        paired = paired_difference(losses[0].tolist(), losses[1].tolist())
        verdict = dict(higher="decided", lower="reversed").get(paired["verdict"], paired["verdict"])
        return dict(paired, runner_up=runner_up, verdict=verdict)


def decision_text(decision: dict | None, winner: str, runner_up: str) -> str:
    """A round's ``decision`` (``_Mixture.decision``) for people, with the winner's and runner-up's names."""
    if decision is None or decision["verdict"] == "not measured":
        return f"{winner} chosen; not compared with the runner-up (the round was cut short)"
    margin = (f"{decision['mean']:+.3f} nats [{decision['low']:+.3f}, {decision['high']:+.3f}] on {decision['n']} "
              "images")
    if decision["verdict"] == "decided":
        return f"{winner} beats runner-up {runner_up}: validation cross-entropy margin {margin}"
    if decision["verdict"] == "reversed":
        return (f"runner-up {runner_up} validates better than the chosen {winner} (validation cross-entropy margin "
                f"{margin}): alpha's choice is not the better network")
    return (f"{winner} and runner-up {runner_up} tie: validation cross-entropy margin {margin} reaches 0, so alpha's "
            "choice is inside the noise")


def alpha_batch(preset: Preset, val_images: int) -> int:
    """Validation images per alpha step: half a training batch. Alpha's gradient is a mean over the batch of the
    candidates' responsibilities and alpha integrates it over the steps, so half the images cost half the
    validation forwards (a sixth of a training step per candidate instead of a third)."""
    return max(1, min(preset.batch_size // 2, val_images))


def _fuse_round(mixture: _Mixture, candidates: list[Genotype], batches: tuple[_Batches, _Batches],
                plan: tuple[int, int], budget: SearchBudget, context: RunContext, started: float,
                round_index: int) -> tuple[int, bool, str | None, list]:
    """Alternate weight and alpha steps until alpha converges on a candidate that validates better than its runner-up
    (``separated``) or the step limit; ``(steps, converged, stop reason ("cancelled" | "time limit" | None), softmax
    history)``."""
    step_limit, warmup_steps = plan
    train_batches, val_batches = batches
    history, accuracies, step = [], [], 0
    for step in range(1, step_limit + 1):
        try:
            context.check()
            train_loss = mixture.weight_step_on(*train_batches.train_batch(step), check=context.check)
        except Cancelled:  # before or inside this step: the weights of the steps done so far stand
            return step - 1, False, stop_reason(context), history
        searching = step > warmup_steps
        # Alpha stands still during the warm-up, so no validation forward is spent there (the chart's validation
        # curves start with the first alpha step).
        measured = (mixture.alpha_step_on(*val_batches.val_batch(step - warmup_steps)) if searching
                    else dict(val_loss=None, val_accuracy=None, candidate_val_accuracy=None))
        history.append(mixture.weights())
        if searching:
            accuracies.append(measured["candidate_val_accuracy"])
        context.emit(dict(method="fuse", type="alpha", round=round_index, step=step, steps=step_limit,
                          phase="search" if searching else "warmup", candidates=[g.id for g in candidates],
                          genotypes=[g.to_json() for g in candidates], alpha=mixture.alpha.detach().cpu().tolist(),
                          weights=history[-1].tolist(), train_loss=train_loss, **measured,
                          elapsed=time.perf_counter() - started))
        shown = f"val accuracy {measured['val_accuracy']:.3f}" if searching else "warm-up"
        context.progress(f"step {step}/{step_limit}, {shown}", step / step_limit)
        # stop early only when alpha has settled on a candidate that validates better (decided), not when it has
        # settled while the candidates validate alike (flat: the round runs on to its step limit)
        if alpha_settled(history, step, warmup_steps, budget) and separated(accuracies, history[-1], budget.window,
                                                                         val_batches.batch):
            return step, True, None, history
    return step, False, None, history


def _build_candidates(candidates: list[Genotype], build: Callable[[Genotype], nn.Module], target,
                      context: RunContext) -> list[nn.Module]:
    """The round's networks; ``context.check()`` between them (building dozens takes seconds: a cancel or a time
    limit does not wait for all)."""
    models = []
    for genotype in candidates:
        context.check()
        models.append(build(genotype).to(target))
    return models


def fuse(space: SearchSpace, train: Tensors, val: Tensors, num_classes: int, preset: Preset,
         budget: SearchBudget = SearchBudget(), seed: int = 0, context: RunContext | None = None, *,
         incumbent: Genotype | None = None, build: Callable[[Genotype], nn.Module] | None = None) -> SearchOutcome:
    """Run FUSE on ``space`` with ``train = (x [N, C, H, W], y [N])`` and ``val`` only, on ``context.device``.

    ``preset`` gives the weights' optimiser (AdamW, ``lr``, ``weight_decay``) and ``batch_size``. ``build`` maps a
    genotype to a network (default ``cell_network`` for ``num_classes`` outputs); tests use it to plant a crippled
    candidate. Events to ``context.emit`` (one per alpha update): ``{method, type: "alpha", round, step,
    steps (the round's step limit), candidates: [id], genotypes: [json], alpha: [C], weights: [C], train_loss,
    val_loss, val_accuracy,
    candidate_val_accuracy, elapsed}`` plus a ``{type: "round_done"}`` per round; progress per step, each round a
    phase. A cancel ends the search with status ``"stopped"`` (partial rounds kept); ``budget.max_seconds`` ends it
    with the incumbent. Same seed, same result on one device.
    """
    budget.validate()
    check_data(*train, *val)
    context = (context or RunContext(None)).with_deadline(budget.max_seconds)
    target = resolve_device(context.device)
    build = build or (lambda genotype: cell_network(genotype, num_classes, train[0].shape[1]))
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    batch, _, step_limit = step_plan(len(train[1]), preset.batch_size, budget.epochs_per_round)
    plan = (step_limit, int(budget.warmup * step_limit))
    started, rounds, stop = time.perf_counter(), [], None
    for round_index, phase in enumerate(context.step_phases([f"round {r}/{budget.rounds}"
                                                             for r in range(1, budget.rounds + 1)]), 1):
        keep = [incumbent] if incumbent is not None else []
        candidates = keep + space.sample_distinct(budget.candidates - len(keep), rng, exclude=keep)
        torch.manual_seed(seed * 1000 + round_index)
        try:
            models = _build_candidates(candidates, build, target, context)
        except Cancelled:  # before this round's first step: the rounds done so far stand (as when a step is cut)
            stop = stop_reason(context)
            break
        state = _Mixture(models, preset, budget, step_limit, target)
        batches = (_Batches(*train, batch, generator, target),
                   _Batches(*val, alpha_batch(preset, len(val[1])), generator, target))
        steps, converged, stop, history = _fuse_round(state, candidates, batches, plan, budget, phase, started,
                                                      round_index)
        if steps == 0:  # stopped before the round's first step: nothing to choose from
            break
        winner = int(state.alpha.detach().argmax())
        incumbent = candidates[winner]
        decision = None if stop == "cancelled" else state.decision(winner, *val, batch)
        rounds.append(FuseRound(candidates, state.alpha.detach().cpu().tolist(), history[-1].tolist(), steps,
                                converged, winner, decision))
        context.emit(dict(method="fuse", type="round_done", round=round_index, steps=steps, converged=converged,
                          winner=incumbent.id, genotype=incumbent.to_json(), weights=history[-1].tolist(),
                          decision=None if decision is None else dict(
                              decision, runner_up=candidates[decision["runner_up"]].id),
                          elapsed=time.perf_counter() - started))
        if stop is not None:
            break
    return SearchOutcome("fuse", incumbent, outcome_status(stop, incumbent), time.perf_counter() - started,
                         str(target), rounds=rounds, ended=stop or "finished")


def stop_reason(context: RunContext) -> str:
    """Why a search's ``Cancelled`` came: ``"time limit"`` when its deadline passed and nobody asked to cancel,
    else ``"cancelled"``."""
    return "time limit" if context.deadline_passed() and not context.cancel_requested() else "cancelled"


def outcome_status(stop: str | None, best) -> str:
    """A search outcome's status from why it stopped and what it chose (``SearchOutcome``): a cancel is
    ``"stopped"``; a time limit with nothing chosen is ``"time limit"``, never a cancel; else ``"done"``."""
    if stop == "cancelled":
        return "stopped"
    return "done" if best is not None else "time limit"


def check_data(x_train, y_train, x_val, y_val) -> None:
    """``TanasError`` unless a search's training and validation tensors are usable (sizes, shapes, finite)."""
    if len(y_train) < 2 or len(y_val) < 1:
        raise TanasError(f"a search needs >= 2 training and >= 1 validation images, got {len(y_train)} and "
                         f"{len(y_val)}")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise TanasError(f"training images {tuple(x_train.shape[1:])} and validation images "
                         f"{tuple(x_val.shape[1:])} differ in shape")
    if not (torch.isfinite(x_train).all() and torch.isfinite(x_val).all()):
        raise TanasError("the search data contain NaN or Inf values; clean the inputs")
