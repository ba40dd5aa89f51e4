"""Equation 7 of the source on full Fisher matrices, exactly, through their factors ``G`` ``[M, n]``
(``frechet_distance`` on two factors: the nuclear norm of ``G_b G_t^T / M``). Without a batched form: a full-matrix
result has no bootstrap, and the validation report leaves it out (a sweep over factors costs too much)."""
from __future__ import annotations

from tanas_core.distances.metrics.base import Metric, register_metric
from tanas_core.distances.metrics.frechet import frechet_distance

register_metric(Metric(
    name="frechet-full", label="Fréchet, full matrices (eq. 7)", source="eq. 7",
    pair=lambda fisher_b, fisher_t, sigma, segments: frechet_distance(fisher_b, fisher_t),
    representation="factor", in_report=False))
