"""The two asymmetric task distances of the source document, on diagonal or full Fisher matrices.

Each argument is either a diagonal ``[n]`` (``diagonal_fisher``) or a factor ``G`` ``[M, n]`` with ``F = G^T G / M``
(``fisher_factor``, possibly a compressed ``FisherFactor``). Full matrices are never formed: everything goes through
``M x M`` Gram matrices, computed in float64 over blocks of columns (so no float64 copy of a whole factor is made).
Float32 products would halve the time but put errors of ~1e-4 into Frechet distances near 0 (``sqrt(1 - x)``
amplifies them), so exactness wins.

* ``logdet_distance`` (equation 5): ``| logdet(F_b + s^2 I_n)/n - logdet(F_t + s^2 I_m)/m |``, valid for ``n != m``.
  For a factor, ``logdet(G^T G / M + s^2 I) = (n - M) log s^2 + sum_i log(mu_i + s^2)`` with ``mu`` the eigenvalues
  of ``G G^T / M``.
* ``frechet_distance`` (equations 7 and 8): both matrices normalised to unit trace, so the result lies in [0, 1]:
  ``d = sqrt(1 - tr((F_b F_t)^(1/2)))``. For factors, ``tr((F_b F_t)^(1/2))`` is the nuclear norm of
  ``G_b G_t^T / M``; for diagonals it is ``sum_i sqrt(f_b,i f_t,i)``, which gives equation 8's
  ``||sqrt(f_b) - sqrt(f_t)|| / sqrt(2)``.

Extensions that are **not** in the source document, on diagonals (``segments``: the sizes of the parameter tensors,
in order, that the diagonal concatenates):

* ``scaled_logdet_distance``: equation 5 on diagonals divided by their mean, so ``sigma`` is relative to the mean
  diagonal and multiplying a Fisher by a constant changes nothing (literal equation 5 shifts by ``log`` of it).
* ``sorted_frechet_distance``: equation 8 on each tensor's sorted diagonal. Two networks of one task that differ in
  the order of their units have permuted diagonals within a tensor; sorting removes that, the tensor layout stays.
* ``mass_frechet_distance``: equation 8 on the per-tensor Fisher mass profile (each tensor's share of the trace).
* ``logdet_lift``: ``mean log(f + sigma^2) - log sigma^2``, how far a Fisher rises above ``sigma^2``; near 0 the
  log-det distance measures ``sigma``, not the Fisher.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .fisher import FisherFactor
from .errors import TanasError

FisherLike = torch.Tensor | FisherFactor


_GRAM_BLOCK = 16384


def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` in float64 (``[M_a, M_b]``) for factors ``[M, n]``, one block of ``_GRAM_BLOCK`` columns at a
    time."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    for start in range(0, a.shape[1], _GRAM_BLOCK):
        stop = start + _GRAM_BLOCK
        out += a[:, start:stop].double() @ b[:, start:stop].double().T
    return out


def _as_float64(value: FisherLike, name: str) -> tuple[torch.Tensor, int, str, int | None]:
    """``(diagonal in float64 or factor in float32, n, "diagonal" | "factor", sketch seed)``; ``ValueError`` on bad
    input."""
    if isinstance(value, FisherFactor):
        tensor, n, seed = value.matrix, value.num_params, value.sketch_seed
    elif isinstance(value, torch.Tensor):
        tensor, n, seed = value, value.shape[-1] if value.ndim else 0, None
    else:
        raise TanasError(f"{name} must be a Fisher diagonal [n] or factor [M, n] tensor, got {type(value).__name__}")
    if tensor.ndim not in (1, 2):
        raise TanasError(f"{name} must be 1-D (diagonal) or 2-D (factor M x n), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0 or n == 0:
        raise TanasError(f"{name} is empty: it was computed from no samples or no parameters")
    # A factor is checked through its trace or Gram matrix instead (non-finite exactly when the factor has a NaN or
    # an Inf), which saves a whole pass over M x n values.
    if tensor.ndim == 1 and not torch.isfinite(tensor).all():
        raise TanasError(_non_finite(name))
    if tensor.ndim == 1 and (tensor < 0).any():
        raise TanasError(f"{name} has negative entries; a Fisher diagonal is a mean of squares")
    kind = "diagonal" if tensor.ndim == 1 else "factor"
    # Factors keep float32 storage (they can be large); every product and sum below runs in float64.
    dtype = torch.float64 if kind == "diagonal" or tensor.dtype == torch.float64 else torch.float32
    return tensor.detach().to("cpu", dtype), int(n), kind, seed


def logdet_per_parameter(fisher: FisherLike, sigma: float) -> float:
    """``logdet(F + sigma^2 I) / n`` for a diagonal ``[n]`` or a factor ``[M, n]`` (exact, float64)."""
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise TanasError(f"sigma must be a positive finite number, got {sigma!r}")
    tensor, n, kind, _ = _as_float64(fisher, "fisher")
    shift = float(sigma) ** 2
    if kind == "diagonal":
        return float(torch.log(tensor + shift).mean())
    samples = tensor.shape[0]
    if samples <= tensor.shape[1]:
        small = gram(tensor, tensor) / samples  # [M, M]: the nonzero spectrum of G^T G / M
    else:  # more samples than (sketched) columns: the k x k matrix is the smaller one
        small = gram(tensor.T, tensor.T) / samples
    if not torch.isfinite(small).all():
        raise TanasError(_non_finite("fisher"))
    eigenvalues = torch.linalg.eigvalsh(small).clamp_min(0.0)
    return float(((n - small.shape[0]) * math.log(shift) + torch.log(eigenvalues + shift).sum()) / n)


def logdet_distance(fisher_b: FisherLike, fisher_t: FisherLike, sigma: float) -> float:
    """Equation 5: ``d[b, t] = |logdet(F_b,t + s^2 I)/n - logdet(F_t,t + s^2 I)/m|`` (>= 0; n and m may differ)."""
    return abs(logdet_per_parameter(fisher_b, sigma) - logdet_per_parameter(fisher_t, sigma))


def frechet_distance(fisher_b: FisherLike, fisher_t: FisherLike) -> float:
    """Equations 7 / 8 on unit-trace Fisher matrices: ``sqrt(1 - tr((F_b F_t)^(1/2)))`` in [0, 1].

    Two diagonals give equation 8; two factors give equation 7 exactly (through the nuclear norm of
    ``G_b G_t^T / M``); a diagonal and a factor give equation 7 with the diagonal as a diagonal matrix.
    """
    b, n_b, kind_b, seed_b = _as_float64(fisher_b, "fisher_b")
    t, n_t, kind_t, seed_t = _as_float64(fisher_t, "fisher_t")
    if n_b != n_t:
        raise TanasError(f"the Frechet distance needs both Fisher matrices over the same parameters, got n = {n_b} "
                         f"and n = {n_t}: compute both with the same architecture (and the same `params`)")
    if kind_b == kind_t == "factor" and seed_b != seed_t:
        raise TanasError("the two Fisher factors were compressed with different sketches (seeds "
                         f"{seed_b} and {seed_t}); compute both with the same seed")
    if (kind_b == "factor" and seed_b is not None and kind_t == "diagonal") or (
            kind_t == "factor" and seed_t is not None and kind_b == "diagonal"):
        raise TanasError("a compressed Fisher factor cannot be paired with a diagonal; use uncompressed factors")
    trace_b = _trace(b, kind_b)
    trace_t = _trace(t, kind_t)
    for name, trace in (("fisher_b", trace_b), ("fisher_t", trace_t)):
        if not math.isfinite(trace):
            raise TanasError(_non_finite(name))
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


def _trace(tensor: torch.Tensor, kind: str) -> float:
    """``tr F``: the sum of a diagonal, or ``||G||_F^2 / M`` for a factor (accumulated in float64)."""
    if kind == "diagonal":
        return float(tensor.sum())
    return float(torch.linalg.vector_norm(tensor, dtype=torch.float64)) ** 2 / tensor.shape[0]


def _non_finite(name: str) -> str:
    return f"{name} contains NaN or Inf: the network or its data produced non-finite gradients"


def _diagonal(value: FisherLike, name: str, metric: str) -> torch.Tensor:
    tensor, _, kind, _ = _as_float64(value, name)
    if kind != "diagonal":
        raise TanasError(f"the {metric} distance works on Fisher diagonals; compute diagonals (metric frechet or "
                         "logdet) rather than factors")
    return tensor


def scaled_logdet_distance(fisher_b: FisherLike, fisher_t: FisherLike, sigma: float) -> float:
    """Equation 5 on unit-mean diagonals: ``|mean log(f_b/mean f_b + s^2) - mean log(f_t/mean f_t + s^2)|``; scale
    free (a constant factor on either Fisher changes nothing), ``sigma`` relative to the mean diagonal."""
    scaled = []
    for name, value in (("fisher_b", fisher_b), ("fisher_t", fisher_t)):
        diagonal = _diagonal(value, name, "logdet-scaled")
        mean = float(diagonal.mean())
        if mean <= 0:
            raise TanasError(f"{name} is all zeros: a scale-free log-det needs some Fisher mass")
        scaled.append(diagonal / mean)
    return logdet_distance(scaled[0], scaled[1], sigma)


def _check_segments(n: int, segments: list[int], name: str) -> None:
    if sum(segments) != n or any(size < 1 for size in segments):
        raise TanasError(f"{name}: parameter tensor sizes {list(segments)[:4]}... add up to {sum(segments)}, not the "
                         f"diagonal's {n} entries")


def _arranged(metric: str, diagonals: torch.Tensor, segments: list[int]) -> torch.Tensor:
    """Diagonals ``[..., n]`` as a metric extension reads them: each parameter tensor's entries sorted
    (``frechet-sorted``), each tensor's Fisher mass (``frechet-mass``, ``[..., len(segments)]``), else unchanged."""
    if metric not in ("frechet-sorted", "frechet-mass"):
        return diagonals
    _check_segments(diagonals.shape[-1], segments, metric)
    pieces = torch.split(diagonals, list(segments), dim=-1)
    if metric == "frechet-sorted":
        # numpy's vectorised (SIMD) sort: the same values as torch.sort, several times faster on a CPU for the
        # bootstrap's 40 resamples of a VGG-16 diagonal
        return torch.cat([torch.from_numpy(np.sort(piece.cpu().numpy(), axis=-1)) for piece in pieces],
                         dim=-1).to(diagonals.device)
    return torch.stack([piece.sum(-1) for piece in pieces], dim=-1)


def diagonal_summary(metric: str, diagonals: torch.Tensor, segments: list[int], sigma: float) -> torch.Tensor:
    """Everything a diagonal metric needs of one Fisher, for diagonals ``[..., n]`` (float64, or float32 for
    bootstrap resamples: summed, sorted and logged in float32, normalised in float64), so that a pair costs
    one ``summary_distance``: ``logdet`` / ``logdet-scaled``: ``[..., 1]``, ``mean log(f + sigma^2)`` (of the
    unit-mean diagonal for the scaled one); the Frechet metrics: the square root of the unit-trace (sorted, or
    per-tensor mass) diagonal. Computed once per Fisher (or bootstrap resample)."""
    if metric.startswith("logdet"):
        if metric == "logdet-scaled":
            diagonals = diagonals / diagonals.mean(-1, keepdim=True, dtype=torch.float64).to(diagonals.dtype)
        return torch.log(diagonals + float(sigma) ** 2).mean(-1, keepdim=True, dtype=torch.float64)
    # float64 from here: 1 - <s_b, s_t> cancels for close Fishers, so the unit-trace vectors must be exact
    arranged = _arranged(metric, diagonals, segments).double()
    return torch.sqrt(arranged / arranged.sum(-1, keepdim=True))


def summary_distance(metric: str, summary_b: torch.Tensor, summary_t: torch.Tensor) -> torch.Tensor:
    """``d`` of each pair of rows of two ``diagonal_summary`` batches (broadcast) as ``[...]`` float64: the batched
    form of ``logdet_distance`` / ``scaled_logdet_distance`` / ``frechet_distance`` and its extensions on
    diagonals, for bootstrap resamples (the per-pair functions check their inputs; this does not)."""
    if metric.startswith("logdet"):
        return (summary_b - summary_t).abs()[..., 0]
    return torch.sqrt((1.0 - (summary_b * summary_t).sum(-1).clamp(max=1.0)).clamp(min=0.0))


def sorted_frechet_distance(fisher_b: FisherLike, fisher_t: FisherLike, segments: list[int]) -> float:
    """Equation 8 on each parameter tensor's sorted diagonal (``segments``: tensor sizes, in order): invariant to
    permuting the units of any layer. An extension of equation 8, not equation 8."""
    return frechet_distance(*(_arranged("frechet-sorted", _diagonal(value, name, "frechet-sorted"), segments)
                              for name, value in (("fisher_b", fisher_b), ("fisher_t", fisher_t))))


def mass_frechet_distance(fisher_b: FisherLike, fisher_t: FisherLike, segments: list[int]) -> float:
    """Equation 8 on the per-tensor Fisher mass profiles ``[len(segments)]`` (each tensor's summed diagonal):
    invariant to permuting units, blind to how mass spreads inside a tensor. An extension of equation 8."""
    return frechet_distance(*(_arranged("frechet-mass", _diagonal(value, name, "frechet-mass"), segments)
                              for name, value in (("fisher_b", fisher_b), ("fisher_t", fisher_t))))


def logdet_lift(fisher: FisherLike, sigma: float, scaled: bool = False) -> float:
    """``mean log(f + sigma^2) - log sigma^2`` of a diagonal (``scaled``: of the unit-mean diagonal): 0 when the
    Fisher is negligible against ``sigma^2``, so that the log-det distance would only measure ``sigma``."""
    diagonal = _diagonal(fisher, "fisher", "logdet-scaled" if scaled else "logdet")
    if scaled:
        diagonal = diagonal / max(float(diagonal.mean()), 1e-300)
    return logdet_per_parameter(diagonal, sigma) - math.log(float(sigma) ** 2)
