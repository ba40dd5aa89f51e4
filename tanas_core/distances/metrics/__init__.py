"""Task-distance metrics: one ``Metric`` registration per distance, in ``registry.METRICS``.

Built in: the source's log-determinant (``logdet``, eq. 5) and Frechet distances (``frechet``, eq. 8 on diagonals;
``frechet-full``, eq. 7 on factors), and three extensions that are not in the source (``logdet-scaled``,
``frechet-sorted``, ``frechet-mass``). Adding a metric is one module that calls ``register_metric`` and is imported
below (docs/contributing.md); the CLI's choices, the Distances page and the validation report list it from then on.
"""
from __future__ import annotations

import torch

from tanas_core.distances.metrics.base import FisherLike, Metric, gram, register_metric

# isort: off
# importing a metric module registers it; this order is the order every list shows
from tanas_core.distances.metrics.logdet import (logdet_distance, logdet_lift, logdet_per_parameter,
                                                 scaled_logdet_distance)
from tanas_core.distances.metrics.frechet import frechet_distance
from tanas_core.distances.metrics.frechet_permutation import mass_frechet_distance, sorted_frechet_distance
from tanas_core.distances.metrics import frechet_full  # noqa: F401
# isort: on
from tanas_core.errors import TanasError
from tanas_core.registry import METRICS


def get_metric(name: str) -> Metric:
    """The registered metric ``name`` (``TanasError`` naming the registered ones otherwise)."""
    return METRICS[name]


def pair_distance(metric: str, fisher_b: FisherLike, fisher_t: FisherLike, sigma: float, segments: list[int]) -> float:
    """``d`` between two Fishers under the metric named ``metric`` (a name, so that worker processes receive it)."""
    return METRICS[metric].pair(fisher_b, fisher_t, sigma, segments)


def diagonal_summary(metric: str, diagonals: torch.Tensor, segments: list[int], sigma: float) -> torch.Tensor:
    """Everything metric ``metric`` needs of one Fisher, for diagonals ``[..., n]`` (float64, or float32 for
    bootstrap resamples), so that a pair costs one ``summary_distance``; computed once per Fisher or resample."""
    found = METRICS[metric]
    if found.summary is None:
        raise TanasError(f"metric {metric!r} reads {found.representation}s and has no batched form")
    return found.summary(diagonals, segments, sigma)


def summary_distance(metric: str, summary_b: torch.Tensor, summary_t: torch.Tensor) -> torch.Tensor:
    """``d`` of each pair of rows of two ``diagonal_summary`` batches (broadcast), ``[...]`` float64: the batched form
    of the per-pair metric, for bootstrap resamples (the per-pair functions check their inputs; this does not)."""
    return METRICS[metric].compare(summary_b, summary_t)


__all__ = ["FisherLike", "Metric", "register_metric", "get_metric", "pair_distance", "diagonal_summary",
           "summary_distance", "gram", "logdet_per_parameter", "logdet_distance", "scaled_logdet_distance",
           "logdet_lift", "frechet_distance", "sorted_frechet_distance", "mass_frechet_distance"]
