"""Distance matrices between the tasks of a suite, per architecture and seed, with the reference they must beat.

``d[b, t]`` (row = baseline ``b``, column = target ``t``, as in the source document) compares ``F[b, t]``, the Fisher
of the baseline network ``N_b`` on the target data ``X_t`` (``target_fisher``), with ``F[t, t]``; the same procedure
gives both, so ``d[t, t] = 0``.

``X_t`` (held-out probe images, ``probe``) is the same for every network seed, so seed-to-seed differences come from
the networks only. The **reference** ``r[t]`` is the distance of ``t``'s same-initialisation replicates (same initial
weights, other data) placed as baselines of column ``t``: a baseline closer than that cannot be told apart from ``t``
itself. The distance between networks of different seeds (initialisations) is kept as the cross-initialisation
spread; the source's Theorem 1 (strongly convex loss, averaged iterates) is not claimed for it.

In the common-probe view every ``d[b, t]`` of a seed compares two Fishers of **one** network on other data, so its
reference does too: ``r[t]`` compares other draws of ``t``'s data (``target_fisher``: head fitted on other training
images, Fisher on test images) under the same probe network. Retraining the probe is what the cross-initialisation
spread and the closest baseline's stability over seeds measure.

Fisher results and whole matrices are cached in the workspace; asking again is a store read.
"""
from __future__ import annotations

import collections
import itertools
import time

import numpy as np
import torch

from .context import RunContext
from .distance import (diagonal_summary, frechet_distance, logdet_distance, logdet_lift, mass_frechet_distance,
                       scaled_logdet_distance, sorted_frechet_distance, summary_distance)
from .errors import TanasError
from .probe_network import probe_networks
from .records import DistanceResult
from .requests import DistanceRequest, FisherConfig, ZooRequest
from .store import NetworkRecord, Workspace, config_key
from .suites import Suite, resolve_suite
from .target_fisher import FisherSource, stored_chunks, stored_fisher
from .tasks import Task
from .training import Preset, get_preset
from .zoo import network_key, train_zoo

def _pair_distance(metric: str, fisher_b, fisher_t, sigma: float, segments: list[int]) -> float:
    if metric == "logdet":
        return logdet_distance(fisher_b, fisher_t, sigma)
    if metric == "logdet-scaled":
        return scaled_logdet_distance(fisher_b, fisher_t, sigma)
    if metric == "frechet-sorted":
        return sorted_frechet_distance(fisher_b, fisher_t, segments)
    if metric == "frechet-mass":
        return mass_frechet_distance(fisher_b, fisher_t, segments)
    return frechet_distance(fisher_b, fisher_t)


def _distances_key(suite: Suite, arch: str, metric: str, seeds: list[int], preset: Preset, sigma: float,
                   config: FisherConfig) -> str:
    return config_key(dict(kind="distances", networks=[network_key(suite, t, arch, preset, s) for s in seeds
                                                       for t in suite.tasks],
                           metric=metric, sigma=sigma if metric.startswith("logdet") else None,
                           config=config.identity()))


def _request_key(request: DistanceRequest, suite: Suite, arch: str) -> str:
    key = _distances_key(suite, arch, request.metric, list(range(request.seeds)), get_preset(request.preset),
                         request.sigma, request.fisher)
    extras = dict(replicates=request.replicates, bootstrap=request.bootstrap)
    if request.view != "tanas":
        extras.update(view=request.view, reference="data draws")
    return config_key(dict(matrices=key, **extras)) if any(extras.values()) else key


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


def _differences(asked: dict, stored: dict, prefix: str = "") -> list[str]:
    """``"name stored (asked: value)"`` for every setting in which ``stored`` differs from ``asked``."""
    out = []
    for name, value in asked.items():
        other = stored.get(name)
        if isinstance(value, dict) and isinstance(other, dict):
            out += _differences(value, other, f"{prefix}{name}.")
        elif name not in ("workers", "archs") and other != value:
            out.append(f"{prefix}{name} {other} (asked: {value})")
    return out


def nearest_stored(workspace: Workspace, request: DistanceRequest,
                   arch: str) -> tuple[DistanceResult, list[str]] | None:
    """The stored result of ``arch`` on ``request``'s suite (and view) whose settings differ from the request's in
    the fewest fields (the newest on a tie), with those differences; ``None`` when there is none. Shown while the
    asked-for result is missing, so changing a setting does not hide what exists."""
    asked, best = request.for_arch(arch).to_dict(), None
    for payload in workspace.list_results("distances"):
        stored = payload.get("request")
        if (stored is None or payload["suite"] != request.suite or payload["arch"] != arch
                or payload.get("view", "tanas") != request.view):
            continue
        # read as an earlier version stored it: a field added since at the value it ran with (``ADDED_AT``)
        differences = _differences(asked, DistanceRequest.from_stored(stored).to_dict())
        if best is None or len(differences) < len(best[1]):
            best = (payload, differences)
    return None if best is None else (DistanceResult.from_payload(best[0], cached=True), best[1])


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
    tasks = list(suite.tasks)
    networks = _networks(request, suite, context.phase("zoo networks and replicates", 0.0, 0.3))
    fishers = FisherSource(context, suite, preset, "factor" if request.metric == "frechet-full" else "diagonal",
                           request.fisher, request.workers)
    # Whose data a baseline's Fisher is taken on: X_t (TA-NAS: b's network on t's images) or X_b (probe view: the
    # one probe network on b's images).
    data = (lambda b, t: tasks[t]) if request.view == "tanas" else (lambda b, t: tasks[b])
    fisher_phase = context.phase("Fisher matrices and distances", 0.3, 0.95)
    column = [[networks[(t.name, seed, 0)] for t in tasks] for seed in seeds]
    _ensure_fishers(fishers, request, networks, tasks, seeds, data, fisher_phase)
    matrices = np.stack([_seed_matrix(fishers, request, column[k], tasks, data) for k in range(len(seeds))])
    replicates = _replicate_distances(fishers, request, networks, tasks, seeds)
    bootstrap = np.stack([_bootstrap(fishers, request, column[k], tasks, data, k) for k in range(len(seeds))])
    noise = _noise_floor(fishers, request, networks, tasks, seeds)
    result = DistanceResult(suite.name, arch, request.metric, float(request.sigma), seeds, [t.name for t in tasks],
                            matrices, noise, time.perf_counter() - started, False, replicates,
                            _lifts(fishers, request, networks, tasks, seeds), bootstrap, request.view,
                            request.to_dict())
    context.workspace.put_result("distances", key, result.to_payload())
    context.progress("done", 1.0)
    return result


def _networks(request: DistanceRequest, suite: Suite, context: RunContext) -> dict:
    """``{(task, seed, replicate): record}``: the zoo networks and their replicates (TA-NAS view) or, in the probe
    view, the common probe network of each seed for every task (replicate 0 only: its replicates are data draws)."""
    arch = request.archs[0]
    if request.view == "probe":
        probes = probe_networks(context, suite, arch, get_preset(request.preset), list(range(request.seeds)))
        return {(task.name, seed, 0): record for seed, record in probes.items() for task in suite.tasks}
    records = train_zoo(ZooRequest(suite=request.suite, archs=(arch,), seeds=request.seeds, preset=request.preset,
                                   workers=request.workers, replicates=request.replicates), context)
    return {(r.task, r.seed, r.replicate): r for r in records}


def fisher_count(request: DistanceRequest, tasks: int) -> int:
    """Distinct Fishers one architecture of ``request`` needs with ``tasks`` tasks (progress, cost notes): T per
    network in the TA-NAS view, 1 in the probe's, for each seed's T networks and their replicates."""
    per_network = tasks if request.view == "tanas" else 1
    return request.seeds * tasks * (per_network + request.replicates)


Entry = tuple  # (network, task whose images its Fisher is taken on[, data draw of that task's images])


def _replicate_entry(request: DistanceRequest, networks: dict, task: Task, seed: int, replicate: int) -> Entry:
    """The Fisher of replicate ``replicate`` of ``task`` at ``seed``: its same-initialisation replicate network on
    ``X_t`` (TA-NAS view), or the probe network on data draw ``replicate`` of ``t`` (probe view)."""
    if request.view == "probe":
        return networks[(task.name, seed, 0)], task, replicate
    return networks[(task.name, seed, replicate)], task


def _distances(fishers: FisherSource, request: DistanceRequest, pairs: list[tuple[Entry, Entry]],
               context_check) -> list[float]:
    """``d`` of each ``(baseline entry, target entry)`` pair, in order."""
    def item(baseline: Entry, own: Entry) -> tuple:
        return (request.metric, fishers.get(*baseline), fishers.get(*own), request.sigma, fishers.segments(*own))

    values = [0.0] * len(pairs)
    items = (item(*pair) for pair in pairs)
    for position, value in fishers.backend.map(_pair_distance, items, check=context_check):
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
        entries += [_replicate_entry(request, networks, task, seed, r) for task in tasks
                    for r in range(1, request.replicates + 1)]
    work = fisher_count(request, len(tasks))

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


# Resamples formed at once per block: a block holds this many float64 values per baseline (128 MiB).
_BOOTSTRAP_BLOCK_VALUES = 1 << 24


def _bootstrap(fishers: FisherSource, request: DistanceRequest, networks: list[NetworkRecord], tasks: list[Task],
               data, index: int) -> np.ndarray:
    """``[S, T, T]``: ``d[b, t]`` on ``request.bootstrap`` resamples of the probe-image pieces. Resample ``s`` draws
    the same pieces for every Fisher of the matrix, so differences within a column are paired (in the TA-NAS view
    all its Fishers are on ``X_t``; in the probe view each baseline's own images are redrawn alongside
    ``F[t, t]``'s). Empty for full-matrix metrics.

    A resampled Fisher is the pieces' weighted mean with weights (times drawn) x (piece size): one matrix product
    ``[S, pieces] @ [pieces, n]`` per Fisher, summarised once (``diagonal_summary``; a Fisher that several columns
    share, as in the probe view, once for all of them) and paired in batch."""
    samples, count = request.bootstrap, len(tasks)
    if not samples or fishers.representation != "diagonal":
        return np.zeros((samples if fishers.representation == "diagonal" else 0, count, count))
    keys = [[fishers.key(networks[b], data(b, t)) for b in range(count)] for t in range(count)]
    uses = collections.Counter(key for column in keys for key in column)
    rng, out, times_drawn, shared = np.random.default_rng(7919 + index), np.zeros((samples, count, count)), None, {}
    for t, target in enumerate(tasks):
        column = [stored_chunks(fishers.workspace, key) for key in keys[t]]
        segments, pieces = fishers.segments(networks[t], target), len(column[t][0])
        if times_drawn is None:
            times_drawn = torch.from_numpy(np.stack([np.bincount(rng.integers(pieces, size=pieces),
                                                                 minlength=pieces) for _ in range(samples)])).double()
        block = max(1, _BOOTSTRAP_BLOCK_VALUES // column[t][0].shape[1])
        for first in range(0, samples, block):
            rows = slice(first, first + block)
            summaries = []
            for key, (chunks, weights) in zip(keys[t], column):
                summary = shared.get((key, first))
                if summary is None:
                    summary = _resampled_summary(request, chunks, weights, times_drawn[rows], segments)
                    if uses[key] > 1:  # another column needs the same resamples of this Fisher
                        shared[(key, first)] = summary
                summaries.append(summary)
            for b in range(count):
                if b != t:
                    out[rows, b, t] = summary_distance(request.metric, summaries[b], summaries[t]).numpy()
        for key in keys[t]:
            uses[key] -= 1
            if not uses[key]:
                shared = {k: v for k, v in shared.items() if k[0] != key}
    return out


def _resampled_summary(request: DistanceRequest, chunks: torch.Tensor, weights: torch.Tensor,
                       times_drawn: torch.Tensor, segments) -> torch.Tensor:
    """``diagonal_summary`` of the resampled Fishers ``[S, ...]``: pieces ``chunks [P, n]`` of image shares
    ``weights [P]`` drawn ``times_drawn [S, P]`` times. Mixed (and, for ``frechet-sorted``, sorted) in float32, the
    stored pieces' precision, which mostly speeds up the sort; ``diagonal_summary`` normalises in float64, so the
    resampled distances stay within single precision of float64 ones (tested against the per-pair metrics)."""
    mix = times_drawn * weights[None, :]
    return diagonal_summary(request.metric, (mix / mix.sum(1, keepdim=True)).float() @ chunks.float(), segments,
                            request.sigma)


def _replicate_distances(fishers: FisherSource, request: DistanceRequest, networks: dict, tasks: list[Task],
                         seeds: list[int]) -> np.ndarray:
    """``[seeds, T, K]``: each replicate of ``t`` (``_replicate_entry``) placed as a baseline of column ``t``."""
    replicates = np.zeros((len(seeds), len(tasks), request.replicates))
    if not request.replicates:
        return replicates
    keys = [(k, t, r) for k, seed in enumerate(seeds) for t in range(len(tasks))
            for r in range(1, request.replicates + 1)]
    pairs = [(_replicate_entry(request, networks, tasks[t], seeds[k], r), (networks[(tasks[t].name, seeds[k], 0)],
                                                                           tasks[t])) for k, t, r in keys]
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
    """``[seeds, T]`` log-det lift of each ``F[t, t]`` above ``sigma^2`` (log-det metrics only, else NaN)."""
    lift = np.full((len(seeds), len(tasks)), np.nan)
    if request.metric.startswith("logdet"):
        for k, seed in enumerate(seeds):
            for t, task in enumerate(tasks):
                lift[k, t] = logdet_lift(stored_fisher(fishers.workspace, fishers.key(networks[(task.name, seed, 0)],
                                                                                      task)),
                                         request.sigma, scaled=request.metric == "logdet-scaled")
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
    return DistanceResult(first.suite, "+".join(r.arch for r in results), first.metric, first.sigma,
                          [f"{r.arch}:{s}" for r in results for s in r.seeds], first.tasks,
                          np.concatenate([r.matrices for r in results]),
                          _mean_spread([r.noise_floor for r in results]),
                          sum(r.seconds for r in results), False,
                          np.concatenate(replicates) if len({r.shape[-1] for r in replicates}) == 1 else None,
                          np.concatenate([r.lift for r in results]),
                          np.concatenate(bootstraps) if len({b.shape[1] for b in bootstraps}) == 1 else None,
                          first.view)


def _mean_spread(spreads: list[np.ndarray]) -> np.ndarray:
    """Per task, the mean of the architectures' cross-initialisation spreads (NaN where none has one)."""
    stacked = np.stack(spreads)
    counts = (~np.isnan(stacked)).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
