"""Distance matrices between the tasks of a suite, per architecture and seed, with the reference they must beat.

``d[b, t]`` (row = baseline ``b``, column = target ``t``, as in the source document) compares ``F[b, t]``, the Fisher
of the baseline network ``N_b`` on the target data ``X_t`` (``target_fisher``), with ``F[t, t]``; the same procedure
gives both, so ``d[t, t] = 0``.

``X_t`` (held-out probe images, ``probe``) is the same for every network seed, so seed-to-seed differences come from
the networks only. The **reference** ``r[t]`` is the distance of ``t``'s twins placed as baselines of column ``t``
(``views.twin``: the TA-NAS view's own are same-initialisation replicates, same initial weights and other data; a
*redraw* reference uses the same network on other draws of ``t``'s data): a baseline closer than that cannot be
told apart from ``t`` itself. The distance between networks of different seeds (initialisations) is kept as the
cross-initialisation spread; the source's Theorem 1 (strongly convex loss, averaged iterates) is not claimed for it.

In the common-probe view every ``d[b, t]`` of a seed compares two Fishers of **one** network on other data, so its
reference does too: ``r[t]`` compares other draws of ``t``'s data (``target_fisher``: head fitted on other training
images, Fisher on test images) under the same probe network. Retraining the probe is what the cross-initialisation
spread and the closest baseline's stability over seeds measure.

Fisher results and whole matrices are cached in the workspace; asking again is a store read.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from tanas_core.data.suites import Suite, resolve_suite
from tanas_core.data.tasks import Task
from tanas_core.distances.bootstrap import bootstrap_matrices
from tanas_core.distances.metrics import get_metric, pair_distance
from tanas_core.distances.stored import request_key
from tanas_core.distances.views import Entry, get_view, twin
from tanas_core.errors import TanasError
from tanas_core.fisher.target import FisherSource, stored_fisher
from tanas_core.requests import DistanceRequest
from tanas_core.training.trainer import get_preset
from tanas_core.workspace.context import RunContext
from tanas_core.workspace.records import DistanceResult
from tanas_core.workspace.store import NetworkRecord


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
    key = request_key(request, suite, arch)
    stored = context.workspace.get_result("distances", key)
    if stored is not None:
        return DistanceResult.from_payload(stored[0], cached=True)
    started = time.perf_counter()
    tasks = list(suite.tasks)
    view = get_view(request.view)
    networks = view.networks(request, suite, context.phase("zoo networks and replicates", 0.0, 0.3))
    fishers = FisherSource(context, suite, preset, get_metric(request.metric).representation, request.fisher,
                           request.workers)
    data = lambda b, t: view.baseline_images(tasks, b, t)  # noqa: E731  whose images b's Fisher of column t sees
    fisher_phase = context.phase("Fisher matrices and distances", 0.3, 0.95)
    _ensure_fishers(fishers, request, networks, tasks, seeds, data, fisher_phase)
    same = _under_the_other_reference(context.workspace, request, suite, arch)
    if same is not None:  # only the twins differ: the matrices, bootstrap, spread and lifts are stored already
        matrices, bootstrap, noise, lift = same.matrices, same.bootstrap, same.noise_floor, same.lift
    else:
        column = [[networks[(t.name, seed, 0)] for t in tasks] for seed in seeds]
        matrices = np.stack([_seed_matrix(fishers, request, column[k], tasks, data) for k in range(len(seeds))])
        bootstrap = np.stack([bootstrap_matrices(fishers, request, column[k], tasks, data, k)
                              for k in range(len(seeds))])
        noise = _noise_floor(fishers, request, networks, tasks, seeds)
        lift = _lifts(fishers, request, networks, tasks, seeds)
    result = DistanceResult(suite=suite.name, arch=arch, metric=request.metric, sigma=float(request.sigma),
                            seeds=seeds, tasks=[t.name for t in tasks], matrices=matrices, noise_floor=noise,
                            seconds=time.perf_counter() - started, cached=False,
                            replicates=_replicate_distances(fishers, request, networks, tasks, seeds),
                            lift=lift, bootstrap=bootstrap, view=request.view, request=request.to_dict())
    context.workspace.put_result("distances", key, result.to_payload())
    context.progress("done", 1.0)
    return result


def _under_the_other_reference(workspace, request: DistanceRequest, suite: Suite,
                               arch: str) -> DistanceResult | None:
    """The stored result of ``request`` under the other reference (redraw <-> retrained), or ``None``: the twins
    are all a reference changes, so its matrices, bootstrap, cross-initialisation spread and lifts are this one's."""
    other = "retrained" if request.twin_kind == "redraw" else "redraw"
    stored = workspace.get_result("distances", request_key(request.replace(reference=other), suite, arch))
    return None if stored is None else DistanceResult.from_payload(stored[0], cached=True)


def _distances(fishers: FisherSource, request: DistanceRequest, pairs: list[tuple[Entry, Entry]],
               context_check) -> list[float]:
    """``d`` of each ``(baseline entry, target entry)`` pair, in order."""
    def item(baseline: Entry, own: Entry) -> tuple:
        return (request.metric, fishers.get(*baseline), fishers.get(*own), request.sigma, fishers.segments(*own))

    values = [0.0] * len(pairs)
    items = (item(*pair) for pair in pairs)
    for position, value in fishers.backend.map(pair_distance, items, check=context_check):
        values[position] = value
    return values


def _ensure_fishers(fishers: FisherSource, request: DistanceRequest, networks: dict, tasks: list[Task],
                    seeds: list[int], data, context: RunContext) -> None:
    """Compute every Fisher the matrices and replicates of ``seeds`` need, in one batch of work (so worker processes
    start once per architecture); ``data(b, t)`` is the task whose images baseline ``b``'s Fisher of column ``t``
    is taken on."""
    entries = []
    for seed in seeds:
        entries += [(networks[(tasks[b].name, seed, 0)], data(b, t)) for t in range(len(tasks))
                    for b in range(len(tasks))]
        entries += [twin(request, networks, task, seed, r) for task in tasks
                    for r in range(1, request.replicates + 1)]
    work = request.fisher_count(len(tasks))

    def report(record: NetworkRecord, target: Task) -> None:
        what = f"replicate {record.replicate}" if record.replicate else f"seed {record.seed}"
        context.progress(f"{what}: F[{record.task}, {target.name}]", min(fishers.count, work) / work)

    fishers.ensure(entries, report)


def _seed_matrix(fishers: FisherSource, request: DistanceRequest, networks: list[NetworkRecord], tasks: list[Task],
                 data) -> np.ndarray:
    """One seed's ``d[b, t]`` over every off-diagonal pair (Fishers from ``_ensure_fishers``)."""
    pairs = [(b, t) for t in range(len(tasks)) for b in range(len(tasks)) if b != t]
    entries = [((networks[b], data(b, t)), (networks[t], tasks[t])) for b, t in pairs]
    values = _distances(fishers, request, entries, fishers.check)
    matrix = np.zeros((len(tasks), len(tasks)))
    for (b, t), value in zip(pairs, values):
        matrix[b, t] = value
    fishers.release(keep=[(networks[t], tasks[t]) for t in range(len(tasks))])
    return matrix


def _replicate_distances(fishers: FisherSource, request: DistanceRequest, networks: dict, tasks: list[Task],
                         seeds: list[int]) -> np.ndarray:
    """``[seeds, T, K]``: each twin of ``t`` (``views.twin``: the request's reference) placed as a baseline of
    column ``t``."""
    replicates = np.zeros((len(seeds), len(tasks), request.replicates))
    if not request.replicates:
        return replicates
    keys = [(k, t, r) for k, seed in enumerate(seeds) for t in range(len(tasks))
            for r in range(1, request.replicates + 1)]
    pairs = [(twin(request, networks, tasks[t], seeds[k], r), (networks[(tasks[t].name, seeds[k], 0)], tasks[t]))
             for k, t, r in keys]
    for (k, t, r), value in zip(keys, _distances(fishers, request, pairs, fishers.check)):
        replicates[k, t, r - 1] = value
    return replicates


def _noise_floor(fishers: FisherSource, request: DistanceRequest, networks: dict, tasks: list[Task],
                 seeds: list[int]) -> np.ndarray:
    """Per task, the mean distance between its networks of different initialisations (seeds) on its own data
    (NaN with one seed): the cross-initialisation spread."""
    noise = np.full(len(tasks), np.nan)
    floor_pairs = [(t, i, j) for t in range(len(tasks)) for i, j in itertools.combinations(seeds, 2)]
    values = _distances(fishers, request, [((networks[(tasks[t].name, i, 0)], tasks[t]),
                                            (networks[(tasks[t].name, j, 0)], tasks[t])) for t, i, j in floor_pairs],
                        fishers.check)
    floors: dict[int, list[float]] = {}
    for (t, _, _), value in zip(floor_pairs, values):
        floors.setdefault(t, []).append(value)
    for t, values_t in floors.items():
        noise[t] = float(np.mean(values_t))
    return noise


def _lifts(fishers: FisherSource, request: DistanceRequest, networks: dict, tasks: list[Task],
           seeds: list[int]) -> np.ndarray:
    """``[seeds, T]`` lift of each ``F[t, t]`` above ``sigma^2`` (metrics with a ``lift``: log-det; else NaN)."""
    lift, measure = np.full((len(seeds), len(tasks)), np.nan), get_metric(request.metric).lift
    if measure is not None:
        for k, seed in enumerate(seeds):
            for t, task in enumerate(tasks):
                own = stored_fisher(fishers.workspace, fishers.key(networks[(task.name, seed, 0)], task))
                lift[k, t] = measure(own, request.sigma)
    return lift


def across_architectures(results: list[DistanceResult]) -> DistanceResult:
    """One result whose matrices are every architecture's per-seed matrices together (mean/std over both)."""
    if not results:
        raise TanasError("no per-architecture results to combine")
    first = results[0]
    for other in results[1:]:
        if other.tasks != first.tasks or other.metric != first.metric or other.view != first.view:
            raise TanasError("combine results of the same suite, metric and view only")
    replicates, bootstraps = [r.replicates for r in results], [r.bootstrap for r in results]
    return DistanceResult(
        suite=first.suite, arch="+".join(r.arch for r in results), metric=first.metric, sigma=first.sigma,
        seeds=[f"{r.arch}:{s}" for r in results for s in r.seeds], tasks=first.tasks,
        matrices=np.concatenate([r.matrices for r in results]),
        noise_floor=_mean_spread([r.noise_floor for r in results]), seconds=sum(r.seconds for r in results),
        cached=False,
        replicates=np.concatenate(replicates) if len({r.shape[-1] for r in replicates}) == 1 else None,
        lift=np.concatenate([r.lift for r in results]),
        bootstrap=np.concatenate(bootstraps) if len({b.shape[1] for b in bootstraps}) == 1 else None,
        view=first.view)


def _mean_spread(spreads: list[np.ndarray]) -> np.ndarray:
    """Per task, the mean of the architectures' cross-initialisation spreads (NaN where none has one)."""
    stacked = np.stack(spreads)
    counts = (~np.isnan(stacked)).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
