"""Distance matrices between the tasks of a suite, per architecture and seed, with their noise floor.

``d[b, t]`` (row = baseline ``b``, column = target ``t``, as in the source document) compares ``F[b, t]``, the Fisher
of the baseline network ``N_b`` on the target data ``X_t``, with ``F[t, t]``. ``N_b``'s head predicts task ``b``'s
classes, so by default (``head="refit"``) a fresh linear head is fitted on ``X_t``'s training images with ``N_b``'s
backbone frozen, and the empirical Fisher uses task ``t``'s labels; ``head="own"`` keeps ``N_b``'s head and uses the
model Fisher (labels drawn from its own softmax). The same procedure gives ``F[t, t]``, so ``d[t, t] = 0``.

``X_t`` is the same for every network seed (the target's seed-0 training split), so seed-to-seed differences come from
the networks only; the distance between two seeds' networks of the same task on the same data is the noise floor
(the source document's Theorem 1 says it tends to 0).

Fisher results and whole matrices are cached in the workspace; asking again is a store read.
"""
from __future__ import annotations

import copy
import functools
import itertools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .context import RunContext
from .distance import frechet_distance, logdet_distance
from .fisher import FisherFactor, diagonal_fisher, fisher_factor
from .networks import BackboneHeadNet
from .store import NetworkRecord, Workspace, config_key
from .tasks import Suite, Task, make_splits
from .training import Preset, get_preset, resolve_device
from .requests import DistanceRequest, FisherConfig, ZooRequest
from .tasks import resolve_suite
from .zoo import model_from_state, network_key, train_zoo, verify_checkpoint
from .errors import TanasError

METRICS = ("logdet", "frechet", "frechet-full")


def refit_head(model: BackboneHeadNet, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
               weight_decay: float = 1e-4, steps: int = 100) -> BackboneHeadNet:
    """A copy of ``model`` with a new linear head for ``num_classes`` fitted on frozen backbone ``features [N, d]``.

    Full-batch L-BFGS on the L2-regularised cross-entropy: deterministic, and it converges in well under a second
    on demo feature sizes.
    """
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(head(features), labels) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    refitted = copy.deepcopy(model)
    refitted.head = head.requires_grad_(True)
    return refitted.eval()


def _fisher_key(record: NetworkRecord, suite: Suite, target: Task, preset: Preset, representation: str,
                config: FisherConfig) -> str:
    return config_key(dict(network=record.key, sha=record.sha256, target=target.fingerprint(), spec=vars(suite.spec),
                           sizes=vars(preset.sizes), representation=representation, config=vars(config)))


def _stored_fisher(workspace: Workspace, key: str) -> torch.Tensor | FisherFactor | None:
    stored = workspace.get_result("fisher", key)
    if stored is None:
        return None
    payload, ref = stored
    matrix = workspace.read_tensors(ref)["fisher"]
    if payload["representation"] == "diagonal" or payload["sketch_seed"] is None:
        return matrix
    return FisherFactor(matrix, payload["n"], payload["sketch_seed"])


def compute_target_fisher(state: dict[str, torch.Tensor], record: NetworkRecord, suite: Suite, target: Task,
                          preset: Preset, representation: str, config: FisherConfig,
                          device: str = "auto") -> tuple[torch.Tensor | FisherFactor, float]:
    """``(F[b, t], seconds)`` from N_b's weights ``state`` without touching any workspace (so it can run in a Ray
    task); the result is on the CPU."""
    started = time.perf_counter()
    target_device = resolve_device(device)
    model = model_from_state(record, state, target_device)
    images, labels = _target_examples(target, preset.sizes, suite.spec, config.head_samples)
    if len(labels) < config.samples:
        raise TanasError(f"task {target.name!r} has {len(labels)} training images; the Fisher needs {config.samples}")
    if config.head == "refit":
        with torch.no_grad():
            features = torch.cat([model.features(images[i:i + 256].to(target_device))
                                  for i in range(0, len(images), 256)])
        model = refit_head(model, features, labels.to(target_device), target.num_outputs)
        kind, targets = "empirical", labels[: config.samples]
    else:
        kind, targets = "model", None
    inputs = images[: config.samples]
    if representation == "diagonal":
        result = diagonal_fisher(model, inputs, targets, kind=kind, params=config.params,
                                 batch_size=config.batch_size)
    elif representation == "factor":
        result = fisher_factor(model, inputs, targets, kind=kind, params=config.params,
                               projection_dim=config.projection_dim, batch_size=config.batch_size)
    else:
        raise TanasError(f"representation must be 'diagonal' or 'factor', got {representation!r}")
    return result, time.perf_counter() - started


def _store_fisher(workspace: Workspace, key: str, record: NetworkRecord, target: Task, representation: str,
                  result: torch.Tensor | FisherFactor, seconds: float) -> None:
    matrix = result.matrix if isinstance(result, FisherFactor) else result
    if isinstance(result, FisherFactor):
        n, sketch_seed = result.num_params, result.sketch_seed
    else:
        n, sketch_seed = result.shape[-1], None
    ref = workspace.write_tensors("fisher", key, {"fisher": matrix})
    workspace.put_result("fisher", key, dict(network=record.key, arch=record.arch, baseline=record.task,
                                             target=target.name, seed=record.seed, representation=representation,
                                             n=n, sketch_seed=sketch_seed, seconds=seconds), ref)


@functools.lru_cache(maxsize=16)
def _target_examples(target: Task, sizes, spec, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training images ``[count, C, H, W]`` and labels of ``target``'s seed-0 split: ``X_t`` for
    every baseline of a column, so it is built once per target rather than once per (baseline, target) pair."""
    images, labels = make_splits(target, sizes, seed=0, spec=spec).tensors("train")
    return images[:count], labels[:count]


class _FisherSource:
    """The ``F[b, t]`` of a distance computation, computed where ``backend`` runs work and stored by this process.

    Locally, ``get`` reads a Fisher from the store each time it is asked for (so at most the two Fishers of one
    pair are in memory, which matters for full-matrix factors); on Ray it returns an object-store handle, uploaded
    once and passed to every distance task that needs it.
    """

    def __init__(self, context: RunContext, suite, preset, representation, config):
        self.workspace, self.suite, self.preset = context.workspace, suite, preset
        # Locally the Fishers are computed here, one after the other; on Ray, one task per pair.
        self.backend = context.backend.training(1, context.device)
        self.device, self.check = self.backend.worker_device(context.device), context.check
        self.representation, self.config = representation, config
        self.handles: dict[str, object] = {}
        self.count = 0

    def key(self, record: NetworkRecord, target: Task) -> str:
        return _fisher_key(record, self.suite, target, self.preset, self.representation, self.config)

    def ensure(self, pairs: list[tuple[NetworkRecord, Task]], on_done: Callable[[NetworkRecord, Task], None]) -> None:
        """Compute every missing ``F[b, t]`` of ``pairs`` (one piece of work per pair) and store each as it
        arrives."""
        missing = []
        for record, target in pairs:
            if self.workspace.get_result("fisher", self.key(record, target)) is None:
                missing.append((record, target))
            else:
                self.count += 1
                on_done(record, target)
        states: dict[str, object] = {}

        def items():  # lazily: locally, one network's weights are read when its first pair runs
            for record, target in missing:
                if record.key not in states:
                    states[record.key] = self.backend.put(verify_checkpoint(self.workspace, record))
                yield (states[record.key], record, self.suite, target, self.preset, self.representation,
                       self.config, self.device)

        for position, (result, seconds) in self.backend.map(compute_target_fisher, items(), check=self.check):
            record, target = missing[position]
            _store_fisher(self.workspace, self.key(record, target), record, target, self.representation, result,
                          seconds)
            self.count += 1
            on_done(record, target)

    def get(self, record: NetworkRecord, target: Task):
        key = self.key(record, target)
        if self.backend.in_process:
            return _stored_fisher(self.workspace, key)
        if key not in self.handles:
            self.handles[key] = self.backend.put(_stored_fisher(self.workspace, key))
        return self.handles[key]

    def release(self, keep: list[tuple[NetworkRecord, Task]]) -> None:
        """Drop the object-store handles except those of ``keep`` (needed again for the noise floor)."""
        kept = {self.key(record, target) for record, target in keep}
        self.handles = {key: handle for key, handle in self.handles.items() if key in kept}


def _pair_distance(metric: str, fisher_b, fisher_t, sigma: float) -> float:
    if metric == "logdet":
        return logdet_distance(fisher_b, fisher_t, sigma)
    return frechet_distance(fisher_b, fisher_t)


@dataclass
class DistanceResult:
    """Distance matrices of one suite x architecture x metric.

    Attributes:
        tasks: task names; ``matrices[k, b, t]`` is seed ``k``'s ``d[b, t]`` (row baseline, column target).
        mean, std: over seeds, ``[T, T]``.
        noise_floor: per task, the mean distance between networks of different seeds on the task's own data
            (``nan`` with one seed).
    """

    suite: str
    arch: str
    metric: str
    sigma: float
    seeds: list
    tasks: list
    matrices: np.ndarray
    noise_floor: np.ndarray
    seconds: float
    cached: bool = False

    @property
    def mean(self) -> np.ndarray:
        return self.matrices.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        return self.matrices.std(axis=0)

    def closest(self, target: str, k: int = 3) -> list[dict]:
        """The ``k`` baselines closest to ``target`` (column ``target``, excluding itself), nearest first, with the
        mean and standard deviation over seeds."""
        if target not in self.tasks:
            raise TanasError(f"task {target!r} is not in suite {self.suite!r}: {', '.join(self.tasks)}")
        column = self.tasks.index(target)
        rows = [dict(baseline=name, distance=float(self.mean[b, column]), std=float(self.std[b, column]),
                     per_seed=[float(v) for v in self.matrices[:, b, column]])
                for b, name in enumerate(self.tasks) if b != column]
        return sorted(rows, key=lambda row: row["distance"])[:k]

    def dataset_contrast(self, datasets: dict[str, str]) -> tuple[float, float]:
        """Mean of the seed-averaged ``d[b, t]`` over pairs from the same dataset and over pairs across datasets
        (``datasets``: task name -> dataset; diagonal excluded)."""
        same, across = [], []
        for b, baseline in enumerate(self.tasks):
            for t, target in enumerate(self.tasks):
                if b != t:
                    (same if datasets[baseline] == datasets[target] else across).append(self.mean[b, t])
        return float(np.mean(same)) if same else float("nan"), float(np.mean(across)) if across else float("nan")

    def to_payload(self) -> dict:
        return dict(suite=self.suite, arch=self.arch, metric=self.metric, sigma=self.sigma, seeds=self.seeds,
                    tasks=self.tasks, matrices=self.matrices.tolist(), noise_floor=self.noise_floor.tolist(),
                    seconds=self.seconds)

    @classmethod
    def from_payload(cls, payload: dict, cached: bool = False) -> DistanceResult:
        return cls(payload["suite"], payload["arch"], payload["metric"], payload["sigma"], payload["seeds"],
                   payload["tasks"], np.asarray(payload["matrices"]), np.asarray(payload["noise_floor"]),
                   payload["seconds"], cached)


def _distances_key(suite: Suite, arch: str, metric: str, seeds: list[int], preset: Preset, sigma: float,
                   config: FisherConfig) -> str:
    return config_key(dict(kind="distances", networks=[network_key(suite, t, arch, preset, s) for s in seeds
                                                       for t in suite.tasks],
                           metric=metric, sigma=sigma if metric == "logdet" else None, config=vars(config)))


def _request_key(request: DistanceRequest, suite: Suite, arch: str) -> str:
    return _distances_key(suite, arch, request.metric, list(range(request.seeds)), get_preset(request.preset),
                          request.sigma, request.fisher)


def stored_distances(workspace: Workspace, request: DistanceRequest) -> list[DistanceResult | None]:
    """Per architecture of ``request.archs``, the stored result of ``distance_matrices`` for this request, or
    ``None`` (never computes anything)."""
    request.validate(workspace)
    suite = resolve_suite(request.suite, workspace)
    results = []
    for arch in request.archs:
        stored = workspace.get_result("distances", _request_key(request, suite, arch))
        results.append(None if stored is None else DistanceResult.from_payload(stored[0], cached=True))
    return results


def task_atlas(distances: np.ndarray) -> np.ndarray:
    """2-D coordinates ``[T, 2]`` of T tasks by classical MDS of the symmetrised distances ``(d + d^T) / 2``.

    Classical MDS: double-centre the squared distances, keep the two leading eigenvectors scaled by the square root
    of their (non-negative) eigenvalues. Asymmetry is averaged away; the atlas is a picture, the matrix the data.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise TanasError(f"an atlas needs a square matrix of at least 2 tasks, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise TanasError("the distance matrix contains NaN or Inf")
    symmetric = (d + d.T) / 2
    n = len(d)
    centring = np.eye(n) - np.ones((n, n)) / n
    gram = -0.5 * centring @ (symmetric ** 2) @ centring
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:2]
    coordinates = vectors[:, order] * np.sqrt(np.clip(values[order], 0, None))
    if coordinates.shape[1] < 2:
        coordinates = np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))
    return coordinates


def distance_matrices(request: DistanceRequest, context: RunContext) -> list[DistanceResult]:
    """The ``d[b, t]`` matrices of ``request.suite``, one ``DistanceResult`` per architecture of ``request.archs``
    (in that order), each with a matrix per seed 0..K-1. Missing zoo networks are trained first.

    ``metric``: ``"logdet"`` (equation 5 on diagonals), ``"frechet"`` (equation 8, diagonals) or
    ``"frechet-full"`` (equation 7 on full matrices, exact through factors); ``sigma`` only matters for logdet.
    A repeated request is read from the store. On a ``RayBackend`` the missing networks, every Fisher (one task per
    network and target) and every distance (one task per pair) run on Ray; locally networks train in
    ``request.workers`` processes and the rest runs here. This process stores every result.
    """
    request.validate(context.workspace)
    suite = resolve_suite(request.suite, context.workspace)
    return [_arch_distances(request.for_arch(arch), suite, step)
            for arch, step in zip(request.archs, context.step_phases(list(request.archs)))]


def _arch_distances(request: DistanceRequest, suite: Suite, context: RunContext) -> DistanceResult:
    arch, seeds, preset = request.archs[0], list(range(request.seeds)), get_preset(request.preset)
    key = _request_key(request, suite, arch)
    stored = context.workspace.get_result("distances", key)
    if stored is not None:
        return DistanceResult.from_payload(stored[0], cached=True)
    started = time.perf_counter()
    records = train_zoo(ZooRequest(suite=request.suite, archs=(arch,), seeds=request.seeds, preset=request.preset,
                                   workers=request.workers), context.phase("zoo networks", 0.0, 0.3))
    by_task_seed = {(r.task, r.seed): r for r in records}
    fishers = _FisherSource(context, suite, preset, "factor" if request.metric == "frechet-full" else "diagonal",
                            request.fisher)
    tasks = list(suite.tasks)
    fisher_phase = context.phase("Fisher matrices and distances", 0.3, 0.95)
    matrices = np.stack([_seed_matrix(fishers, request, [by_task_seed[(t.name, seed)] for t in tasks], tasks,
                                      fisher_phase, index) for index, seed in enumerate(seeds)])
    noise = _noise_floor(fishers, request, by_task_seed, tasks, seeds)
    result = DistanceResult(suite.name, arch, request.metric, float(request.sigma), seeds, [t.name for t in tasks],
                            matrices, noise, time.perf_counter() - started)
    context.workspace.put_result("distances", key, result.to_payload())
    context.progress("done", 1.0)
    return result


def _seed_matrix(fishers: _FisherSource, request: DistanceRequest, networks: list[NetworkRecord], tasks: list[Task],
                 context: RunContext, index: int) -> np.ndarray:
    """One seed's ``d[b, t]``: every ``F[b, t]`` (computed or read), then every off-diagonal pair."""
    work = request.seeds * len(tasks) * len(tasks)

    def report(record: NetworkRecord, target: Task) -> None:
        context.progress(f"seed {record.seed}: F[{record.task}, {target.name}]", min(fishers.count, work) / work)

    fishers.ensure([(record, target) for target in tasks for record in networks], report)
    pairs = [(b, t) for t in range(len(tasks)) for b in range(len(tasks)) if b != t]
    items = ((request.metric, fishers.get(networks[b], tasks[t]), fishers.get(networks[t], tasks[t]), request.sigma)
             for b, t in pairs)
    matrix = np.zeros((len(tasks), len(tasks)))
    for position, value in fishers.backend.map(_pair_distance, items, check=context.check):
        matrix[pairs[position]] = value
    fishers.release(keep=[(networks[t], tasks[t]) for t in range(len(tasks))])
    return matrix


def _noise_floor(fishers: _FisherSource, request: DistanceRequest, by_task_seed: dict, tasks: list[Task],
                 seeds: list[int]) -> np.ndarray:
    """Per task, the mean distance between its networks of different seeds on its own data (NaN with one seed)."""
    noise = np.full(len(tasks), np.nan)
    floor_pairs = [(t, i, j) for t in range(len(tasks)) for i, j in itertools.combinations(seeds, 2)]
    items = ((request.metric, fishers.get(by_task_seed[(tasks[t].name, i)], tasks[t]),
              fishers.get(by_task_seed[(tasks[t].name, j)], tasks[t]), request.sigma) for t, i, j in floor_pairs)
    floors: dict[int, list[float]] = {}
    for position, value in fishers.backend.map(_pair_distance, items, check=fishers.check):
        floors.setdefault(floor_pairs[position][0], []).append(value)
    for t, values in floors.items():
        noise[t] = float(np.mean(values))
    return noise


def across_architectures(results: list[DistanceResult]) -> DistanceResult:
    """One result whose matrices are every architecture's per-seed matrices together (mean/std over both)."""
    if not results:
        raise TanasError("no per-architecture results to combine")
    first = results[0]
    for other in results[1:]:
        if other.tasks != first.tasks or other.metric != first.metric:
            raise TanasError("combine results of the same suite and metric only")
    return DistanceResult(first.suite, "+".join(r.arch for r in results), first.metric, first.sigma,
                          [f"{r.arch}:{s}" for r in results for s in r.seeds], first.tasks,
                          np.concatenate([r.matrices for r in results]),
                          np.nanmean(np.stack([r.noise_floor for r in results]), axis=0)
                          if len(first.seeds) > 1 else first.noise_floor,
                          sum(r.seconds for r in results))
