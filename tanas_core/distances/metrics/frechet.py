"""The Frechet distance of the source (equations 7 and 8): both Fisher matrices normalised to unit trace, so the
result lies in [0, 1]: ``d = sqrt(1 - tr((F_b F_t)^(1/2)))``.

For factors, ``tr((F_b F_t)^(1/2))`` is the nuclear norm of ``G_b G_t^T / M`` (equation 7, ``frechet-full``); for
diagonals it is ``sum_i sqrt(f_b,i f_t,i)``, which gives equation 8's ``||sqrt(f_b) - sqrt(f_t)|| / sqrt(2)``
(``frechet``).
"""
from __future__ import annotations

import math

import torch

from tanas_core.distances.metrics.base import FisherLike, Metric, as_float64, gram, non_finite, register_metric, trace
from tanas_core.errors import TanasError


def frechet_distance(fisher_b: FisherLike, fisher_t: FisherLike) -> float:
    """Equations 7 / 8 on unit-trace Fisher matrices: ``sqrt(1 - tr((F_b F_t)^(1/2)))`` in [0, 1].

    Two diagonals give equation 8; two factors give equation 7 exactly (through the nuclear norm of
    ``G_b G_t^T / M``); a diagonal and a factor give equation 7 with the diagonal as a diagonal matrix.
    """
    b, n_b, kind_b, seed_b = as_float64(fisher_b, "fisher_b")
    t, n_t, kind_t, seed_t = as_float64(fisher_t, "fisher_t")
    if n_b != n_t:
        raise TanasError(f"the Frechet distance needs both Fisher matrices over the same parameters, got n = {n_b} "
                         f"and n = {n_t}: compute both with the same architecture (and the same `params`)")
    if kind_b == kind_t == "factor" and seed_b != seed_t:
        raise TanasError("the two Fisher factors were compressed with different sketches (seeds "
                         f"{seed_b} and {seed_t}); compute both with the same seed")
    if (kind_b == "factor" and seed_b is not None and kind_t == "diagonal") or (
            kind_t == "factor" and seed_t is not None and kind_b == "diagonal"):
        raise TanasError("a compressed Fisher factor cannot be paired with a diagonal; use uncompressed factors")
    trace_b = trace(b, kind_b)
    trace_t = trace(t, kind_t)
    for name, value in (("fisher_b", trace_b), ("fisher_t", trace_t)):
        if not math.isfinite(value):
            raise TanasError(non_finite(name))
    if trace_b <= 0 or trace_t <= 0:
        raise TanasError("a Fisher matrix with zero trace (all gradients zero) has no unit-trace normalisation")
    if kind_b == kind_t == "diagonal":
        fidelity = torch.sqrt(b * t).sum()
    elif kind_b == kind_t == "factor":
        cross = gram(b, t) / math.sqrt(b.shape[0] * t.shape[0])  # G_b G_t^T / sqrt(M_b M_t)
        fidelity = torch.linalg.matrix_norm(cross, ord="nuc")
    else:
        diagonal, factor = (b, t) if kind_b == "diagonal" else (t, b)
        # tr((D F)^(1/2)) = ||G D^(1/2)||_* / sqrt(M): the square roots of the eigenvalues of G D G^T / M
        weighted = gram(factor.double() * diagonal, factor) / factor.shape[0]
        fidelity = torch.linalg.eigvalsh((weighted + weighted.T) / 2).clamp_min(0.0).sqrt().sum()
    similarity = float(fidelity) / math.sqrt(trace_b * trace_t)
    return math.sqrt(max(0.0, 1.0 - min(1.0, similarity)))


def unit_trace_root(diagonals: torch.Tensor) -> torch.Tensor:
    """``sqrt(f / sum f)`` of each diagonal ``[..., k]``, in float64: ``1 - <s_b, s_t>`` cancels for close Fishers,
    so the unit-trace vectors must be exact."""
    diagonals = diagonals.double()
    return torch.sqrt(diagonals / diagonals.sum(-1, keepdim=True))


def fidelity_distance(summary_b: torch.Tensor, summary_t: torch.Tensor) -> torch.Tensor:
    """``sqrt(1 - <s_b, s_t>)`` of each pair of unit-trace roots (broadcast), clamped to [0, 1]."""
    return torch.sqrt((1.0 - (summary_b * summary_t).sum(-1).clamp(max=1.0)).clamp(min=0.0))


register_metric(Metric(
    name="frechet", label="Fréchet, diagonal (eq. 8)", source="eq. 8",
    pair=lambda fisher_b, fisher_t, sigma, segments: frechet_distance(fisher_b, fisher_t),
    summary=lambda diagonals, segments, sigma: unit_trace_root(diagonals), compare=fidelity_distance))
