"""Distance matrices between the tasks of a suite, per architecture and seed, with their noise floor.

``d[b, t]`` (row = baseline ``b``, column = target ``t``, as in the source document) compares ``F[b, t]``, the Fisher
of the baseline network ``N_b`` on the target data ``X_t`` (``target_fisher``), with ``F[t, t]``; the same procedure
gives both, so ``d[t, t] = 0``.

``X_t`` is the same for every network seed (the target's seed-0 training split), so seed-to-seed differences come from
the networks only; the distance between two seeds' networks of the same task on the same data is the noise floor
(the source document's Theorem 1 says it tends to 0).

Fisher results and whole matrices are cached in the workspace; asking again is a store read.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from .context import RunContext
from .distance import frechet_distance, logdet_distance
from .errors import TanasError
from .requests import DistanceRequest, FisherConfig, ZooRequest
from .store import NetworkRecord, Workspace, config_key
from .suites import Suite, resolve_suite
from .target_fisher import FisherSource
from .tasks import Task
from .training import Preset, get_preset
from .zoo import network_key, train_zoo

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
    fishers = FisherSource(context, suite, preset, "factor" if request.metric == "frechet-full" else "diagonal",
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


def _seed_matrix(fishers: FisherSource, request: DistanceRequest, networks: list[NetworkRecord], tasks: list[Task],
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


def _noise_floor(fishers: FisherSource, request: DistanceRequest, by_task_seed: dict, tasks: list[Task],
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
