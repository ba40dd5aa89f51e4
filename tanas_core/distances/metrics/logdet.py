"""The log-determinant distance (equation 5 of the source) and its scale-free extension.

* ``logdet`` (equation 5): ``| logdet(F_b + s^2 I_n)/n - logdet(F_t + s^2 I_m)/m |``, valid for ``n != m``. For a
  factor, ``logdet(G^T G / M + s^2 I) = (n - M) log s^2 + sum_i log(mu_i + s^2)`` with ``mu`` the eigenvalues of
  ``G G^T / M``. Computed here on diagonals (``representation="diagonal"``): the report labels it so.
* ``logdet-scaled`` (an extension, not in the source): equation 5 on diagonals divided by their mean, so ``sigma``
  is relative to the mean diagonal and multiplying a Fisher by a constant changes nothing (literal equation 5 shifts
  by ``log`` of it).
* the lift, ``mean log(f + sigma^2) - log sigma^2``: how far a Fisher rises above ``sigma^2``; near 0 the log-det
  distance measures ``sigma``, not the Fisher.
"""
from __future__ import annotations

import functools
import math

import torch

from tanas_core.distances.metrics.base import (
    FisherLike,
    Metric,
    as_float64,
    diagonal_of,
    gram,
    non_finite,
    register_metric,
)
from tanas_core.errors import TanasError


def logdet_per_parameter(fisher: FisherLike, sigma: float) -> float:
    """``logdet(F + sigma^2 I) / n`` for a diagonal ``[n]`` or a factor ``[M, n]`` (exact, float64)."""
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise TanasError(f"sigma must be a positive finite number, got {sigma!r}")
    tensor, n, kind, _ = as_float64(fisher, "fisher")
    shift = float(sigma) ** 2
    if kind == "diagonal":
        return float(torch.log(tensor + shift).mean())
    samples = tensor.shape[0]
    if samples <= tensor.shape[1]:
        small = gram(tensor, tensor) / samples  # [M, M]: the nonzero spectrum of G^T G / M
    else:  # more samples than (sketched) columns: the k x k matrix is the smaller one
        small = gram(tensor.T, tensor.T) / samples
    if not torch.isfinite(small).all():
        raise TanasError(non_finite("fisher"))
    eigenvalues = torch.linalg.eigvalsh(small).clamp_min(0.0)
    return float(((n - small.shape[0]) * math.log(shift) + torch.log(eigenvalues + shift).sum()) / n)


def logdet_distance(fisher_b: FisherLike, fisher_t: FisherLike, sigma: float) -> float:
    """Equation 5: ``d[b, t] = |logdet(F_b,t + s^2 I)/n - logdet(F_t,t + s^2 I)/m|`` (>= 0; n and m may differ)."""
    return abs(logdet_per_parameter(fisher_b, sigma) - logdet_per_parameter(fisher_t, sigma))


def scaled_logdet_distance(fisher_b: FisherLike, fisher_t: FisherLike, sigma: float) -> float:
    """Equation 5 on unit-mean diagonals: ``|mean log(f_b/mean f_b + s^2) - mean log(f_t/mean f_t + s^2)|``; scale
    free (a constant factor on either Fisher changes nothing), ``sigma`` relative to the mean diagonal."""
    scaled = []
    for name, value in (("fisher_b", fisher_b), ("fisher_t", fisher_t)):
        diagonal = diagonal_of(value, name, "logdet-scaled")
        mean = float(diagonal.mean())
        if mean <= 0:
            raise TanasError(f"{name} is all zeros: a scale-free log-det needs some Fisher mass")
        scaled.append(diagonal / mean)
    return logdet_distance(scaled[0], scaled[1], sigma)


def logdet_lift(fisher: FisherLike, sigma: float, scaled: bool = False) -> float:
    """``mean log(f + sigma^2) - log sigma^2`` of a diagonal (``scaled``: of the unit-mean diagonal): 0 when the
    Fisher is negligible against ``sigma^2``, so that the log-det distance would only measure ``sigma``."""
    diagonal = diagonal_of(fisher, "fisher", "logdet-scaled" if scaled else "logdet")
    if scaled:
        diagonal = diagonal / max(float(diagonal.mean()), 1e-300)
    return logdet_per_parameter(diagonal, sigma) - math.log(float(sigma) ** 2)


def _log_mean(diagonals: torch.Tensor, segments: list[int], sigma: float) -> torch.Tensor:
    """``[..., 1]``: ``mean log(f + sigma^2)`` of each diagonal ``[..., n]`` (accumulated in float64)."""
    return torch.log(diagonals + float(sigma) ** 2).mean(-1, keepdim=True, dtype=torch.float64)


def _scaled_log_mean(diagonals: torch.Tensor, segments: list[int], sigma: float) -> torch.Tensor:
    """``_log_mean`` of the unit-mean diagonals."""
    return _log_mean(diagonals / diagonals.mean(-1, keepdim=True, dtype=torch.float64).to(diagonals.dtype),
                     segments, sigma)


def _absolute_difference(summary_b: torch.Tensor, summary_t: torch.Tensor) -> torch.Tensor:
    return (summary_b - summary_t).abs()[..., 0]


register_metric(Metric(
    name="logdet", label="log-determinant, diagonal (eq. 5)", source="eq. 5",
    pair=lambda fisher_b, fisher_t, sigma, segments: logdet_distance(fisher_b, fisher_t, sigma),
    summary=_log_mean, compare=_absolute_difference, uses_sigma=True,
    lift=logdet_lift))
register_metric(Metric(
    name="logdet-scaled", label="log-det, scale-free (extension of eq. 5)", source="extension of eq. 5",
    pair=lambda fisher_b, fisher_t, sigma, segments: scaled_logdet_distance(fisher_b, fisher_t, sigma),
    summary=_scaled_log_mean, compare=_absolute_difference, uses_sigma=True,
    lift=functools.partial(logdet_lift, scaled=True)))
