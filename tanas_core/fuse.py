"""FUSE (the source document's Algorithm 1) and the random-search baseline, on a ``SearchSpace``.

FUSE, one round: sample C candidates (the incumbent stays one of them) and relax their outputs into

    c_bar(X) = sum_c softmax(alpha)_c * c(X)                                      (equation 16)

then alternate (i) alpha frozen: one step on the candidates' weights on a training batch (equation 17, see below);
(ii) weights frozen: one step on alpha, descending L_val(alpha; w, c_bar) on a validation batch (equation 18); until alpha converges (the softmax weights move less than ``tolerance`` over
``window`` steps) or the round's step limit. The winner is argmax alpha (equation 19; Algorithm 1's "argmin" is a
typo of the slides). ``rounds`` rounds, then the winner is trained from scratch by the caller.

Two choices, both measured on a constructed case (one candidate crippled to a constant output, see the tests):

* "Output" is taken as the class probabilities, so L_val is a mixture likelihood. Its gradient in alpha_c is
  ``softmax(alpha)_c - mean responsibility_c`` (the share of the validation labels candidate c explains best), and
  plain SGD on alpha has the EM fixed point softmax(alpha) = mean responsibilities: alpha converges, and toward the
  candidate that predicts best on its own, which is what the winner must do when it is trained alone. The alpha
  step evaluates the candidates in eval mode without gradients: C forward passes, no backward pass.
* The weight step (``weight_step="independent"``, the default) gives every candidate its own cross-entropy on the
  same training batch. Taken literally (``weight_step="relaxed"``), equation 17 scales candidate c's gradient by its
  softmax weight, so a candidate that falls behind early stops learning and alpha then ranks head starts, not
  architectures: with it, a well-performing candidate ended below the crippled one. ``relaxed`` stays available.

A short ``warmup`` share of each round trains the weights before alpha moves, so alpha does not judge candidates on
their random initialisation.

The functions here see only the training and validation tensors they are given: the test split cannot leak into a
search. Every alpha update (FUSE) or trained candidate (random search) is reported to ``on_event`` as a plain dict.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .backends import Backend, LocalBackend

from .networks import count_parameters
from .networks.cells import cell_network
from .search_space import Genotype, SearchSpace
from .training import Preset, evaluate, fit, one_cycle, resolve_device, step_plan

Tensors = tuple[torch.Tensor, torch.Tensor]
MIXTURE = "probs"
WEIGHT_STEPS = ("independent", "relaxed")


@dataclass(frozen=True)
class SearchBudget:
    """What a search may spend, in epochs of the training split (wall seconds are measured and reported).

    FUSE: ``rounds`` rounds of ``candidates`` candidates, at most ``epochs_per_round`` epochs of weight steps per
    round (fewer when alpha converges: max change of softmax(alpha) < ``tolerance`` over ``window`` steps, checked
    after ``min_steps``). Random search: ``random_candidates`` genotypes trained ``random_epochs`` each.
    ``final_epochs``: training of the chosen genotype from scratch. ``max_seconds``: optional wall-clock cap on the
    search itself (checked between steps).
    """

    # Defaults mirror the source document's cost ratio (FUSE 2 GPU days, random search 4): FUSE sees 2 x 4
    # candidates for half an epoch each, random search 8 candidates for a whole epoch each.
    candidates: int = 4
    rounds: int = 2
    epochs_per_round: float = 0.5
    random_candidates: int = 8
    random_epochs: float = 1.0
    final_epochs: float = 3.0
    warmup: float = 0.25
    alpha_lr: float = 1.0
    tolerance: float = 0.02
    window: int = 8
    min_steps: int = 8
    max_seconds: float | None = None

    def validate(self) -> None:
        """``ValueError`` for a budget that cannot run or is absurd."""
        checks = [(2 <= self.candidates <= 32, f"candidates must be in 2..32, got {self.candidates}"),
                  (1 <= self.rounds <= 100, f"rounds must be in 1..100, got {self.rounds}"),
                  (0 < self.epochs_per_round <= 1000, f"epochs_per_round must be in (0, 1000], got "
                                                      f"{self.epochs_per_round}"),
                  (1 <= self.random_candidates <= 10000, f"random_candidates must be in 1..10000, got "
                                                         f"{self.random_candidates}"),
                  (0 < self.random_epochs <= 1000, f"random_epochs must be in (0, 1000], got {self.random_epochs}"),
                  (0 < self.final_epochs <= 1000, f"final_epochs must be in (0, 1000], got {self.final_epochs}"),
                  (0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}"),
                  (0 < self.alpha_lr <= 10, f"alpha_lr must be in (0, 10], got {self.alpha_lr}"),
                  (0 < self.tolerance < 1, f"tolerance must be in (0, 1), got {self.tolerance}"),
                  (1 <= self.window, f"window must be >= 1, got {self.window}"),
                  (self.max_seconds is None or self.max_seconds > 0,
                   f"max_seconds must be positive, got {self.max_seconds}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"search budget: {message}")

    @classmethod
    def from_dict(cls, params: dict | None) -> SearchBudget:
        """A validated budget from a JSON object (missing fields keep their defaults, unknown ones are refused)."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown budget field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        budget = cls(**params)
        budget.validate()
        return budget

    def to_dict(self) -> dict:
        """JSON-ready, floats as floats (so ``epochs_per_round=3`` and ``3.0`` give the same search key)."""
        return {f.name: float(getattr(self, f.name)) if f.type.startswith("float") and getattr(self, f.name)
                is not None else getattr(self, f.name) for f in fields(self)}


@dataclass
class FuseRound:
    """One FUSE round: its candidates, final alpha and softmax weights, steps run, convergence, winner index."""

    candidates: list[Genotype]
    alpha: list[float]
    weights: list[float]
    steps: int
    converged: bool
    winner: int


@dataclass
class SearchOutcome:
    """What a search chose and how: ``status`` is ``"done"`` or ``"stopped"`` (then ``best`` is the best so far)."""

    method: str
    best: Genotype | None
    status: str
    seconds: float
    device: str
    rounds: list = None
    evaluated: list = None  # random search: [{genotype, val_accuracy, seconds}]


def relaxed_log_probs(outputs: torch.Tensor, weights: torch.Tensor, mixture: str = MIXTURE) -> torch.Tensor:
    """Log class probabilities ``[N, classes]`` of the relaxed output c_bar for candidate logits ``outputs [C, N,
    classes]`` and softmax weights ``weights [C]``: ``"logits"`` mixes the logits (then softmax), ``"probs"`` mixes
    the class probabilities."""
    if mixture == "logits":
        return F.log_softmax((outputs * weights[:, None, None]).sum(0), dim=1)
    if mixture == "probs":
        return torch.logsumexp(F.log_softmax(outputs, dim=2) + weights.log()[:, None, None], dim=0)
    raise ValueError(f"mixture must be 'logits' or 'probs', got {mixture!r}")


def fuse(space: SearchSpace, train: Tensors, val: Tensors, num_classes: int, preset: Preset,
         budget: SearchBudget = SearchBudget(), seed: int = 0, device: str | torch.device = "auto",
         on_event: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
         incumbent: Genotype | None = None, build: Callable[[Genotype], nn.Module] | None = None,
         mixture: str = MIXTURE, weight_step: str = "independent") -> SearchOutcome:
    """Run FUSE on ``space`` with ``train = (x [N, C, H, W], y [N])`` and ``val`` only.

    ``preset`` gives the weights' optimiser (AdamW, ``lr``, ``weight_decay``) and ``batch_size``. ``build`` maps a
    genotype to a network (default ``cell_network`` for ``num_classes`` outputs); tests use it to plant a crippled
    candidate. Events (one per alpha update): ``{method, round, step, candidates: [id], genotypes: [json],
    alpha: [C], weights: [C], train_loss, val_loss, val_accuracy, elapsed}`` plus a ``{type: "round_done"}`` per
    round. Same seed, same result on one device.
    """
    budget.validate()
    if weight_step not in WEIGHT_STEPS:
        raise ValueError(f"weight_step must be one of {', '.join(WEIGHT_STEPS)}, got {weight_step!r}")
    x_train, y_train = train
    x_val, y_val = val
    _check_data(x_train, y_train, x_val, y_val)
    target = resolve_device(device)
    channels = x_train.shape[1]
    build = build or (lambda genotype: cell_network(genotype, num_classes, channels))
    emit = on_event or (lambda event: None)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    batch, steps_per_epoch, step_limit = step_plan(len(y_train), preset.batch_size, budget.epochs_per_round)
    val_batch = min(preset.batch_size, len(y_val))
    warmup_steps = int(budget.warmup * step_limit)
    started = time.perf_counter()
    rounds: list[FuseRound] = []
    status = "done"

    for round_index in range(1, budget.rounds + 1):
        keep = [incumbent] if incumbent is not None else []
        candidates = keep + space.sample_distinct(budget.candidates - len(keep), rng, exclude=keep)
        torch.manual_seed(seed * 1000 + round_index)
        models = [build(genotype).to(target) for genotype in candidates]
        alpha = torch.zeros(len(models), device=target, requires_grad=True)
        weight_optimizer = torch.optim.AdamW([p for m in models for p in m.parameters()], lr=preset.lr,
                                             weight_decay=preset.weight_decay)
        schedule = one_cycle(weight_optimizer, preset.lr, step_limit)
        alpha_optimizer = torch.optim.SGD([alpha], lr=budget.alpha_lr)
        history, converged, step = [], False, 0
        order = torch.randperm(len(y_train), generator=generator)
        val_order = torch.randperm(len(y_val), generator=generator)
        for step in range(1, step_limit + 1):
            if (should_stop is not None and should_stop()) or _over_time(budget, started):
                status = "stopped"
                step -= 1
                break
            # (i) alpha frozen: a weight step on a training batch through the relaxed output.
            position = ((step - 1) % steps_per_epoch) * batch
            if position == 0 and step > 1:
                order = torch.randperm(len(y_train), generator=generator)
            index = order[position: position + batch]
            for model in models:
                model.train()
            inputs = x_train[index].to(target)
            targets = y_train[index].to(target)
            outputs = torch.stack([model(inputs) for model in models])
            if weight_step == "relaxed":
                train_loss = F.nll_loss(relaxed_log_probs(outputs, F.softmax(alpha.detach(), 0), mixture), targets)
                objective = train_loss
            else:
                with torch.no_grad():
                    train_loss = F.nll_loss(relaxed_log_probs(outputs, F.softmax(alpha, 0), mixture), targets)
                objective = sum(F.cross_entropy(output, targets) for output in outputs)
            weight_optimizer.zero_grad(set_to_none=True)
            objective.backward()
            weight_optimizer.step()
            schedule.step()
            # (ii) weights frozen: an alpha step on a validation batch.
            start = ((step - 1) * val_batch) % max(1, len(y_val) - val_batch + 1)
            val_index = val_order[start: start + val_batch]
            with torch.no_grad():
                for model in models:
                    model.eval()
                candidate_outputs = torch.stack([m(x_val[val_index].to(target)) for m in models])
            val_targets = y_val[val_index].to(target)
            relaxed = relaxed_log_probs(candidate_outputs, F.softmax(alpha, 0), mixture)
            val_loss = F.nll_loss(relaxed, val_targets)
            searching = step > warmup_steps
            if searching:
                alpha_optimizer.zero_grad(set_to_none=True)
                val_loss.backward()
                alpha_optimizer.step()
            weights = F.softmax(alpha.detach(), 0).cpu()
            history.append(weights)
            emit(dict(method="fuse", type="alpha", round=round_index, step=step,
                      phase="search" if searching else "warmup",
                      candidates=[g.id for g in candidates], genotypes=[g.to_json() for g in candidates],
                      alpha=alpha.detach().cpu().tolist(), weights=weights.tolist(),
                      train_loss=float(train_loss.detach()), val_loss=float(val_loss.detach()),
                      val_accuracy=float((relaxed.argmax(1) == val_targets).float().mean()),
                      candidate_val_accuracy=(candidate_outputs.argmax(2) == val_targets).float().mean(1).tolist(),
                      elapsed=time.perf_counter() - started))
            if step >= warmup_steps + max(budget.min_steps, budget.window + 1):
                drift = (history[-1] - history[-1 - budget.window]).abs().max()
                if float(drift) < budget.tolerance:
                    converged = True
                    break
        if step == 0:  # stopped before the round's first step: nothing to choose from
            break
        winner = int(alpha.detach().argmax())
        incumbent = candidates[winner]
        rounds.append(FuseRound(candidates, alpha.detach().cpu().tolist(), history[-1].tolist(), step, converged,
                                winner))
        emit(dict(method="fuse", type="round_done", round=round_index, steps=step, converged=converged,
                  winner=incumbent.id, genotype=incumbent.to_json(), weights=history[-1].tolist(),
                  elapsed=time.perf_counter() - started))
        if status == "stopped":
            break
    return SearchOutcome("fuse", incumbent, status, time.perf_counter() - started, str(target), rounds=rounds)


def random_search(space: SearchSpace, train: Tensors, val: Tensors, num_classes: int, preset: Preset,
                  budget: SearchBudget = SearchBudget(), seed: int = 0, device: str | torch.device = "auto",
                  on_event: Callable[[dict], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, backend: Backend | None = None) -> SearchOutcome:
    """Random search: ``budget.random_candidates`` genotypes of ``space``, each trained ``budget.random_epochs`` on
    ``train``, the best by validation accuracy wins (the earliest drawn on a tie). One event per candidate, in the
    order they finish: ``{method, type: "candidate", step, candidates: [id], genotypes: [json], val_accuracy,
    seconds, best_val_accuracy, elapsed}``.

    ``backend``: where candidates train (default: here, one after the other; a ``RayBackend`` trains each as one Ray
    task, all at once). Each candidate's weights are seeded by its draw index, so the outcome does not depend on the
    backend (bit for bit with equal torch thread counts)."""
    budget.validate()
    x_train, y_train = train
    x_val, y_val = val
    _check_data(x_train, y_train, x_val, y_val)
    target = resolve_device(device)
    emit = on_event or (lambda event: None)
    backend = backend or LocalBackend()
    genotypes = space.sample_distinct(budget.random_candidates, random.Random(seed))
    started = time.perf_counter()
    local = isinstance(backend, LocalBackend)
    data = tuple(backend.put(tensor) for tensor in (x_train, y_train, x_val, y_val))

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or _over_time(budget, started)

    # Here a candidate also stops mid-training; a Ray task is cancelled instead.
    items = [(genotype.to_json(), index, seed, num_classes, preset, budget.random_epochs,
              str(target) if local else "auto", *data, *((stop,) if local else ()))
             for index, genotype in enumerate(genotypes, 1)]

    results: dict[int, dict] = {}
    status, best_accuracy = "done", -1.0
    try:
        for position, result in backend.map(train_candidate, items, should_stop=stop):
            results[position] = result
            best_accuracy = max(best_accuracy, result["val_accuracy"])
            genotype = genotypes[position]
            emit(dict(method="random", type="candidate", round=1, step=position + 1, candidates=[genotype.id],
                      genotypes=[genotype.to_json()], val_accuracy=result["val_accuracy"],
                      seconds=result["seconds"], best_val_accuracy=best_accuracy,
                      elapsed=time.perf_counter() - started))
    except InterruptedError:
        status = "stopped"
    evaluated = [results[position] for position in sorted(results)]
    best = None
    if evaluated:
        winner = max(sorted(results), key=lambda position: (results[position]["val_accuracy"], -position))
        best = genotypes[winner]
    return SearchOutcome("random", best, status, time.perf_counter() - started, str(target), evaluated=evaluated)


def train_candidate(genotype_json: str, index: int, seed: int, num_classes: int, preset: Preset, epochs: float,
                    device: str, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                    y_val: torch.Tensor, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train one random-search candidate (the ``index``-th drawn, 1-based) for ``epochs`` and measure it:
    ``{genotype, val_accuracy, seconds, params}``. Touches no workspace, so it can run in a Ray task."""
    genotype = Genotype.from_json(genotype_json)
    target = resolve_device(device)
    started = time.perf_counter()
    torch.manual_seed(seed * 1000 + index)
    model = cell_network(genotype, num_classes, x_train.shape[1])
    fit(model, x_train, y_train, preset, epochs, seed + index, target, should_stop=should_stop,
        name=f"random-search candidate {index}")
    accuracy = evaluate(model, x_val, y_val, device=target)
    return dict(genotype=genotype_json, val_accuracy=accuracy, seconds=time.perf_counter() - started,
                params=count_parameters(model))


def _over_time(budget: SearchBudget, started: float) -> bool:
    return budget.max_seconds is not None and time.perf_counter() - started > budget.max_seconds


def _check_data(x_train, y_train, x_val, y_val) -> None:
    if len(y_train) < 2 or len(y_val) < 1:
        raise ValueError(f"a search needs >= 2 training and >= 1 validation images, got {len(y_train)} and "
                         f"{len(y_val)}")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"training images {tuple(x_train.shape[1:])} and validation images "
                         f"{tuple(x_val.shape[1:])} differ in shape")
    if not (torch.isfinite(x_train).all() and torch.isfinite(x_val).all()):
        raise ValueError("the search data contain NaN or Inf values; clean the inputs")
