"""The bootstrap over probe images: ``d[b, t]`` on resamples of the pieces a Fisher's images were split into, for
intervals, rank frequencies and paired differences (diagonal metrics, in their batched form)."""
from __future__ import annotations

import collections

import numpy as np
import torch

from tanas_core.data.tasks import Task
from tanas_core.distances.metrics import diagonal_summary, get_metric, summary_distance
from tanas_core.fisher.target import FisherSource, stored_chunks
from tanas_core.requests import DistanceRequest
from tanas_core.workspace.store import NetworkRecord

# Resamples formed at once per block: a block holds this many float64 values per baseline (128 MiB).
_BOOTSTRAP_BLOCK_VALUES = 1 << 24


def bootstrap_matrices(fishers: FisherSource, request: DistanceRequest, networks: list[NetworkRecord],
                       tasks: list[Task], data, index: int) -> np.ndarray:
    """``[S, T, T]``: ``d[b, t]`` on ``request.bootstrap`` resamples of the probe-image pieces. Resample ``s`` draws
    the same pieces for every Fisher of the matrix, so differences within a column are paired (in the TA-NAS view
    all its Fishers are on ``X_t``; in the probe view each baseline's own images are redrawn alongside
    ``F[t, t]``'s). Empty for a metric without a batched form (full-matrix metrics).

    A resampled Fisher is the pieces' weighted mean with weights (times drawn) x (piece size): one matrix product
    ``[S, pieces] @ [pieces, n]`` per Fisher, summarised once (``diagonal_summary``; a Fisher that several columns
    share, as in the probe view, once for all of them) and paired in batch."""
    samples, count = request.bootstrap, len(tasks)
    batched = fishers.representation == "diagonal" and get_metric(request.metric).summary is not None
    if not samples or not batched:
        return np.zeros((samples if batched else 0, count, count))
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
