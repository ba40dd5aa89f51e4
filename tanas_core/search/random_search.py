"""Random search, the baseline FUSE is compared with: genotypes drawn from the space, each trained for the same
budget, the best by validation accuracy wins. Candidates run on the context's backend (here with per-step progress,
or one Ray task each)."""
from __future__ import annotations

import random
import time

import torch

from tanas_core.errors import Cancelled
from tanas_core.networks import count_parameters
from tanas_core.networks.devices import resolve_device
from tanas_core.requests import SearchBudget
from tanas_core.search.cells import cell_network
from tanas_core.search.fuse import SearchOutcome, Tensors, check_data, outcome_status, stop_reason
from tanas_core.search.space import Genotype, SearchSpace
from tanas_core.training.trainer import Preset, evaluate, fit
from tanas_core.workspace.context import RunContext


def random_search(space: SearchSpace, train: Tensors, val: Tensors, num_classes: int, preset: Preset,
                  budget: SearchBudget = SearchBudget(), seed: int = 0,
                  context: RunContext | None = None) -> SearchOutcome:
    """Random search: ``budget.random_candidates`` genotypes of ``space``, each trained ``budget.random_epochs`` on
    ``train``, the best by validation accuracy wins (the earliest drawn on a tie). One event per candidate to
    ``context.emit``, in the order they finish: ``{method, type: "candidate", step, candidates: [id], genotypes:
    [json], val_accuracy, seconds, best_val_accuracy, elapsed}``.

    ``context.backend`` decides where candidates train (here, one after the other, with per-step progress; a
    ``RayBackend`` trains each as one Ray task, all at once). Each candidate's weights are seeded by its draw
    index, so the outcome does not depend on the backend (bit for bit with equal torch thread counts)."""
    budget.validate()
    check_data(*train, *val)
    context = (context or RunContext(None)).with_deadline(budget.max_seconds)
    target, backend = resolve_device(context.device), context.backend
    genotypes = space.sample_distinct(budget.random_candidates, random.Random(seed))
    started = time.perf_counter()
    data = tuple(backend.put(tensor) for tensor in (*train, *val))
    # Here a candidate also stops mid-training (its phase of the context); a Ray task is cancelled instead.
    phases = context.step_phases([f"candidate {i}/{len(genotypes)}" for i in range(1, len(genotypes) + 1)])
    items = [(genotype.to_json(), index, seed, num_classes, preset, budget.random_epochs,
              backend.worker_device(str(target)), *data, *((phases[index - 1],) if backend.in_process else ()))
             for index, genotype in enumerate(genotypes, 1)]
    results: dict[int, dict] = {}
    stop = None
    try:
        for position, result in backend.map(train_candidate, items, check=context.check):
            results[position] = result
            context.emit(dict(method="random", type="candidate", round=1, step=position + 1,
                              candidates=[genotypes[position].id], genotypes=[genotypes[position].to_json()],
                              val_accuracy=result["val_accuracy"], seconds=result["seconds"],
                              best_val_accuracy=max(r["val_accuracy"] for r in results.values()),
                              elapsed=time.perf_counter() - started))
            context.progress(f"{len(results)}/{len(genotypes)} candidates trained", len(results) / len(genotypes))
    except Cancelled:
        stop = stop_reason(context)
    evaluated = [results[position] for position in sorted(results)]
    best = None
    if evaluated:
        winner = max(sorted(results), key=lambda position: (results[position]["val_accuracy"], -position))
        best = genotypes[winner]
    return SearchOutcome("random", best, outcome_status(stop, best), time.perf_counter() - started, str(target),
                         evaluated=evaluated, ended=stop or "finished")


def train_candidate(genotype_json: str, index: int, seed: int, num_classes: int, preset: Preset, epochs: float,
                    device: str, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                    y_val: torch.Tensor, context: RunContext | None = None) -> dict:
    """Train one random-search candidate (the ``index``-th drawn, 1-based) for ``epochs`` and measure it:
    ``{genotype, val_accuracy, seconds, params}``. Touches no workspace, so it can run in a Ray task (no
    ``context`` there; here the context reports progress and stops it mid-training)."""
    genotype = Genotype.from_json(genotype_json)
    target = resolve_device(device)
    started = time.perf_counter()
    torch.manual_seed(seed * 1000 + index)
    model = cell_network(genotype, num_classes, x_train.shape[1])
    fit(model, x_train, y_train, preset, epochs, seed + index, target, context,
        name=f"random-search candidate {index}")
    accuracy = evaluate(model, x_val, y_val, device=target)
    return dict(genotype=genotype_json, val_accuracy=accuracy, seconds=time.perf_counter() - started,
                params=count_parameters(model))
