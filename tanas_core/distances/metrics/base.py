"""What every task-distance metric shares: the ``Metric`` registration, and the Fisher inputs it reads.

A metric compares two Fisher matrices, each a diagonal ``[n]`` (``diagonal_fisher``) or a factor ``G`` ``[M, n]``
with ``F = G^T G / M`` (``fisher_factor``, possibly a compressed ``FisherFactor``). Full matrices are never formed:
everything goes through ``M x M`` Gram matrices, computed in float64 over blocks of columns (so no float64 copy of a
whole factor is made). Float32 products would halve the time but put errors of ~1e-4 into Frechet distances near 0
(``sqrt(1 - x)`` amplifies them), so exactness wins.

A metric on diagonals also has a **batched form** for the bootstrap's resamples: ``summary`` turns diagonals
``[..., n]`` into what the metric needs of one Fisher (computed once per Fisher), ``compare`` turns two batches of
summaries into distances; ``tests/test_metrics.py`` checks that it agrees with the per-pair function for every
registered metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from tanas_core.errors import TanasError
from tanas_core.fisher.matrices import FisherFactor
from tanas_core.registry import METRICS

FisherLike = torch.Tensor | FisherFactor
PairFunction = Callable[[FisherLike, FisherLike, float, list], float]  # (F_b, F_t, sigma, segments) -> d


@dataclass(frozen=True)
class Metric:
    """One task distance between two Fisher matrices.

    ``pair(fisher_b, fisher_t, sigma, segments) -> float``: the distance of one pair (``segments``: the sizes of
    the parameter tensors the diagonal concatenates, in order). ``summary(diagonals [..., n], segments, sigma) ->
    [..., k]`` float64 and ``compare(summary_b, summary_t) -> [...]`` float64: its batched form (diagonal metrics
    only; ``None`` for a metric on factors, which then has no bootstrap). ``representation``: the Fisher it reads
    (``"diagonal"`` or ``"factor"``). ``uses_sigma``: whether ``sigma`` changes the result (it then enters the
    store key). ``in_report``: whether ``validate distances`` reports it by default. ``symmetric``: whether
    ``pair(a, b) == pair(b, a)``. ``lift(fisher, sigma) -> float``: how far a Fisher rises above ``sigma^2``
    (log-det metrics: near 0 the distance measures ``sigma``, not the Fisher), else ``None``. ``source``: the
    source document's equation, or "extension" for a metric that is not in it.
    """

    name: str
    label: str
    source: str
    pair: PairFunction
    summary: Callable | None = None
    compare: Callable | None = None
    representation: str = "diagonal"
    uses_sigma: bool = False
    in_report: bool = True
    symmetric: bool = True
    lift: Callable | None = None

    def __post_init__(self):
        if self.representation not in ("diagonal", "factor"):
            raise TanasError(f"metric {self.name!r}: representation must be 'diagonal' or 'factor', got "
                             f"{self.representation!r}")
        if (self.summary is None) != (self.compare is None):
            raise TanasError(f"metric {self.name!r}: give both summary and compare (its batched form) or neither")


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to ``registry.METRICS`` under its name (``TanasError`` if the name is taken)."""
    return METRICS.register(metric.name, metric)


_GRAM_BLOCK = 16384


def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` in float64 (``[M_a, M_b]``) for factors ``[M, n]``, one block of ``_GRAM_BLOCK`` columns at a
    time."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    for start in range(0, a.shape[1], _GRAM_BLOCK):
        stop = start + _GRAM_BLOCK
        out += a[:, start:stop].double() @ b[:, start:stop].double().T
    return out


def as_float64(value: FisherLike, name: str) -> tuple[torch.Tensor, int, str, int | None]:
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
        raise TanasError(non_finite(name))
    if tensor.ndim == 1 and (tensor < 0).any():
        raise TanasError(f"{name} has negative entries; a Fisher diagonal is a mean of squares")
    kind = "diagonal" if tensor.ndim == 1 else "factor"
    # Factors keep float32 storage (they can be large); every product and sum below runs in float64.
    dtype = torch.float64 if kind == "diagonal" or tensor.dtype == torch.float64 else torch.float32
    return tensor.detach().to("cpu", dtype), int(n), kind, seed


def trace(tensor: torch.Tensor, kind: str) -> float:
    """``tr F``: the sum of a diagonal, or ``||G||_F^2 / M`` for a factor (accumulated in float64)."""
    if kind == "diagonal":
        return float(tensor.sum())
    return float(torch.linalg.vector_norm(tensor, dtype=torch.float64)) ** 2 / tensor.shape[0]


def non_finite(name: str) -> str:
    """The message for a Fisher argument ``name`` holding NaN or Inf."""
    return f"{name} contains NaN or Inf: the network or its data produced non-finite gradients"


def diagonal_of(value: FisherLike, name: str, metric: str) -> torch.Tensor:
    """``value`` as a float64 diagonal ``[n]``; ``TanasError`` for a factor (``metric`` reads diagonals only)."""
    tensor, _, kind, _ = as_float64(value, name)
    if kind != "diagonal":
        raise TanasError(f"the {metric} distance works on Fisher diagonals; compute diagonals (metric frechet or "
                         "logdet) rather than factors")
    return tensor
