"""Fisher information of a network on data, exactly, from per-sample gradients (source document, equations 1-4).

The empirical Fisher of equation 4 is ``F = (1/M) sum_i g_i g_i^T`` with ``g_i`` the gradient of ``-log p(y_i | x_i)``
for sample ``i`` alone. Squaring the gradient of a whole mini-batch (what many implementations do) gives
``(sum_i g_i)^2``, a different quantity. Here ``g_i`` is computed for every sample:

* one forward and one backward pass per chunk of samples, with BatchNorm in eval mode so samples stay independent;
* the parameters themselves do not require grad, so the backward pass only propagates activation gradients, and
  it stops at the first layer with selected parameters (nothing flows into the inputs);
* hooks on every ``Conv2d``, ``Linear`` and ``BatchNorm2d`` rebuild each sample's parameter gradient from the layer's
  input and output gradient, then square-and-sum it (diagonal) or store it (factor). 1 x 1 convolutions are one
  batched matrix product of the two maps; other convolutions on maps of 8 x 8 or more, and grouped ones, use the
  library's weight-gradient kernel on one convolution whose groups are the samples; smaller maps use unfold + a
  batched matrix product. Either is the arithmetic a normal backward spends on weight
  gradients, without the sum over samples.

``per_sample_gradients_loop`` is the brute-force reference: one backward pass per sample.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tanas_core.errors import TanasError
from tanas_core.fisher.per_sample import layer_gradients, layer_slots

_PIECE_ELEMENTS = 1 << 20  # per-sample gradient elements per piece (4 MiB of float32): measured best on a CPU


@dataclass
class FisherFactor:
    """A Fisher matrix ``F = G^T G / M`` given by a (possibly compressed) factor.

    Attributes:
        matrix: ``[M, k]`` float32. Uncompressed, ``k == num_params`` and row ``i`` is sample ``i``'s gradient.
            Compressed, ``matrix = G S`` for a seeded CountSketch ``S`` (``num_params x k``): Gram matrices and
            traces are preserved in expectation, with relative error of order ``1/sqrt(k)`` (see
            ``sketch_error_bound``).
        num_params: ``n``, the number of parameters the Fisher is over (its size is ``n x n``).
        sketch_seed: the CountSketch seed, or ``None`` when uncompressed. Two factors can be compared only when they
            share it.
    """

    matrix: torch.Tensor
    num_params: int
    sketch_seed: int | None = None

    @property
    def num_samples(self) -> int:
        return int(self.matrix.shape[0])


def select_parameters(model: nn.Module, params: str = "backbone") -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` pairs in ``named_parameters()`` order: ``"backbone"`` (names starting ``backbone.``)
    or ``"all"``."""
    if params not in ("backbone", "all"):
        raise TanasError(f"params must be 'backbone' or 'all', got {params!r}")
    chosen = [(name, p) for name, p in model.named_parameters() if params == "all" or name.startswith("backbone.")]
    if not chosen:
        raise TanasError(f"the model has no {params} parameters (a backbone needs a `backbone` submodule)")
    return chosen


def diagonal_fisher(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, *,
                    kind: str = "empirical", params: str = "backbone", batch_size: int = 128,
                    seed: int = 0, groups: int = 1) -> torch.Tensor:
    """Diagonal of the Fisher: ``[n]`` float32, the mean over samples of each squared per-sample gradient.

    Args:
        model: evaluated in eval mode (BatchNorm uses running statistics); its mode is restored afterwards.
        inputs: ``[M, C, H, W]`` on any device (moved to the model's device chunk by chunk).
        targets: ``[M]`` int64 labels; required for ``kind="empirical"`` (equation 4).
        kind: ``"empirical"`` uses ``targets``; ``"model"`` samples each label from the model's own softmax with a
            generator seeded by ``seed`` (the true Fisher of equation 3, estimated by sampling).
        params: ``"backbone"`` (default: the head is task-specific) or ``"all"``.
        batch_size: samples per forward/backward chunk (memory grows with ``batch_size x`` the activations); each
            layer's per-sample gradients are formed a few samples at a time (at most ``_PIECE_ELEMENTS`` values).
        groups: ``G > 1`` returns the diagonal of each of ``G`` consecutive pieces of the samples separately (sizes
            from ``torch.tensor_split``, differing by at most one), in one pass with full-size chunks: the pieces a
            bootstrap resamples, for the price of one Fisher.
    Returns:
        ``[n]`` (``groups == 1``) or ``[G, n]``, with ``n`` the number of selected parameters, in
        ``named_parameters()`` order.
    """
    _check_inputs(inputs, targets, kind)
    if not 1 <= groups <= len(inputs):
        raise TanasError(f"groups must be between 1 and the number of samples ({len(inputs)}), got {groups}")
    selected = select_parameters(model, params)
    total = sum(p.numel() for _, p in selected)
    membership = torch.cat([torch.full((len(piece),), g) for g, piece in
                            enumerate(torch.tensor_split(torch.arange(len(inputs)), groups))])
    diagonal = torch.zeros(groups, total, dtype=torch.float64)
    for chunk_grads, _ in _per_sample_chunks(model, inputs, targets, kind, selected, batch_size, seed,
                                             want="square-sum", membership=membership):
        diagonal += chunk_grads
    means = (diagonal / torch.bincount(membership, minlength=groups)[:, None]).float()
    return means[0] if groups == 1 else means


def fisher_factor(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, *,
                  kind: str = "empirical", params: str = "backbone", projection_dim: int | None = None,
                  batch_size: int = 128, seed: int = 0) -> torch.Tensor | FisherFactor:
    """Per-sample gradient matrix ``G`` with ``F = G^T G / M``.

    Returns ``[M, n]`` float32 (row ``i``: sample ``i``'s gradient over the selected parameters, in
    ``named_parameters()`` order) when ``projection_dim`` is ``None``. When ``M x n`` would not fit in memory, pass
    ``projection_dim=k``: the result is a ``FisherFactor`` holding ``G S`` (``[M, k]``) for a CountSketch ``S``
    seeded by ``seed``, built without ever forming ``G``; the distances accept it in place of ``G``.
    Arguments otherwise as ``diagonal_fisher``.
    """
    selected = select_parameters(model, params)
    total = sum(p.numel() for _, p in selected)
    if projection_dim is not None and projection_dim < 1:
        raise TanasError(f"projection_dim must be a positive integer, got {projection_dim}")
    want = "rows" if projection_dim is None else ("sketch", projection_dim)
    rows = [chunk for chunk, _ in _per_sample_chunks(model, inputs, targets, kind, selected, batch_size, seed,
                                                     want=want)]
    matrix = torch.cat(rows).float()
    return matrix if projection_dim is None else FisherFactor(matrix, total, seed)


def per_sample_gradients_loop(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                              params: str = "backbone") -> torch.Tensor:
    """Brute-force reference: ``[M, n]`` per-sample gradients of ``-log p(y|x)``, one backward pass per sample."""
    selected = [p for _, p in select_parameters(model, params)]
    was_training = model.training
    model.eval()
    device = selected[0].device
    rows = []
    try:
        for x, y in zip(inputs, targets):
            loss = F.cross_entropy(model(x[None].to(device)), y[None].to(device), reduction="sum")
            grads = torch.autograd.grad(loss, selected)
            rows.append(torch.cat([g.reshape(-1) for g in grads]).cpu())
    finally:
        model.train(was_training)
    return torch.stack(rows)


# ------------------------------------------------------------------------------------------------- engine

def _check_inputs(inputs: torch.Tensor, targets: torch.Tensor | None, kind: str) -> None:
    if kind not in ("empirical", "model"):
        raise TanasError(f"kind must be 'empirical' or 'model', got {kind!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
        raise TanasError("inputs must be a tensor [M, ...] of samples")
    if inputs.shape[0] == 0:
        raise TanasError("cannot compute a Fisher matrix from 0 samples: the data split is empty")
    if not torch.isfinite(inputs).all():
        raise TanasError("inputs contain NaN or Inf values; clean the data before computing the Fisher")
    if kind == "empirical":
        if targets is None:
            raise TanasError("kind='empirical' needs targets (labels); use kind='model' to sample them instead")
        if targets.shape[0] != inputs.shape[0]:
            raise TanasError(f"{inputs.shape[0]} inputs but {targets.shape[0]} targets")


@contextlib.contextmanager
def _fisher_mode(model: nn.Module, selected: list[tuple[str, nn.Parameter]]):
    """Eval mode, no in-place ReLUs (hooks need the tensors they saw), parameters not requiring grad."""
    was_training = model.training
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for m in relus:
        m.inplace = False
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for m in relus:
            m.inplace = True
        for p, flag in flags:
            p.requires_grad_(flag)


def _sketch_tables(total: int, k: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    buckets = torch.randint(0, k, (total,), generator=generator)
    signs = torch.randint(0, 2, (total,), generator=generator).float() * 2 - 1
    return buckets.to(device), signs.to(device)


class _ChunkSink:
    """Receives one chunk's per-sample gradients, layer by layer, in the form the caller wants."""

    def __init__(self, want, rows: int, total: int, sketch, device, membership=None, groups: int = 1):
        self.want, self.sketch, self.membership = want, sketch, membership
        if want == "square-sum":  # [G, n]: membership[i] is the group of the chunk's sample i
            self.result = torch.zeros(groups, total, dtype=torch.float64, device=device)
        elif want == "rows":
            self.result = torch.zeros(rows, total, dtype=torch.float32, device=device)
        else:
            self.result = torch.zeros(rows, want[1], dtype=torch.float32, device=device)

    def add(self, offset: int, rows: slice, flat: torch.Tensor) -> None:
        """``flat``: ``[len(rows), numel]`` gradients of the chunk's samples ``rows``, for the parameters stored at
        ``offset`` in the flat vector."""
        span = slice(offset, offset + flat.shape[1])
        if self.want == "square-sum":
            # float32 squares summed over one chunk, accumulated across chunks in float64
            squares, owners = flat.pow(2), self.membership[rows]
            first, last = int(owners[0]), int(owners[-1])  # groups are consecutive runs of samples
            if first == last:
                self.result[first, span] += squares.sum(0)
            else:
                for group in range(first, last + 1):
                    self.result[group, span] += squares[owners == group].sum(0)
        elif self.want == "rows":
            self.result[rows, span] += flat
        else:
            buckets, signs = self.sketch
            self.result[rows].index_add_(1, buckets[span], flat * signs[span])


def _per_sample_chunks(model, inputs, targets, kind, selected, batch_size, seed, want,
                       membership: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, int]]:
    """Yield per chunk: ``want="square-sum"`` -> ``([G, n] float64 sums of squares per group of samples, rows)``,
    ``membership [M]`` giving each sample's group (consecutive runs, ``G = max + 1``); ``"rows"`` -> ``([B, n],
    rows)``; ``("sketch", k)`` -> ``([B, k] = G_chunk S, rows)``."""
    _check_inputs(inputs, targets, kind)
    if batch_size < 1:
        raise TanasError(f"batch_size must be >= 1, got {batch_size}")
    slots = dict(layer_slots(model, selected))
    total = sum(p.numel() for _, p in selected)
    device = selected[0][1].device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    groups = 1 if membership is None else int(membership.max()) + 1
    sketch = _sketch_tables(total, want[1], seed, device) if isinstance(want, tuple) else None
    current: dict[str, _ChunkSink] = {}

    def forward_hook(module, args, output):
        layer_input = args[0].detach()
        if not output.requires_grad:
            # The first layer with selected parameters: gradients are needed from here on, not upstream of it
            # (so no backward pass runs into the inputs).
            output = output.detach().requires_grad_(True)
        numel = sum(n for _, n in slots[module].values())
        piece = max(1, _PIECE_ELEMENTS // numel)

        def on_output_grad(grad_out):
            grad_out = grad_out.detach()
            # Pieces of a few samples keep each layer's per-sample gradients cache-sized before they are reduced.
            for first in range(0, layer_input.shape[0], piece):
                rows = slice(first, first + piece)
                grads = layer_gradients(module, layer_input[rows], grad_out[rows])
                for local, (offset, size) in slots[module].items():
                    current["sink"].add(offset, rows, grads[local].reshape(-1, size))

        output.register_hook(on_output_grad)
        return output

    handles = [module.register_forward_hook(forward_hook) for module in slots]
    try:
        with _fisher_mode(model, selected):
            for start in range(0, inputs.shape[0], batch_size):
                x = inputs[start:start + batch_size].to(device)
                owners = None if membership is None else membership[start:start + batch_size].to(device)
                current["sink"] = _ChunkSink(want, x.shape[0], total, sketch, device, owners, groups)
                logits = model(x)
                y = _draw_labels(logits, generator) if kind == "model" else targets[start:start + batch_size].to(device)
                F.cross_entropy(logits, y, reduction="sum").backward()
                yield current["sink"].result.cpu(), x.shape[0]
    finally:
        for handle in handles:
            handle.remove()


def sample_model_labels(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 128,
                        seed: int = 0) -> torch.Tensor:
    """The labels ``kind="model"`` draws: ``[M]`` int64, each from the model's softmax, seeded by ``seed``.

    Drawn chunk by chunk exactly as the Fisher computation draws them, so a brute-force check can reuse them.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels = []
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                logits = model(inputs[start:start + batch_size].to(device))
                labels.append(_draw_labels(logits, generator))
    finally:
        model.train(was_training)
    return torch.cat(labels).cpu()


def _draw_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    probabilities = torch.softmax(logits.detach().double().cpu(), dim=1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1).to(logits.device)


def sketch_error_bound(norm_a: float, norm_b: float, inner: float, k: int, failure: float = 0.01) -> float:
    """Chebyshev bound on ``|<Sa, Sb> - <a, b>|`` for a CountSketch of width ``k``, holding with probability
    ``>= 1 - failure``: ``sqrt((|a|^2 |b|^2 + <a,b>^2) / (k * failure))`` (the estimator is unbiased with variance at
    most ``(|a|^2 |b|^2 + <a,b>^2) / k``)."""
    return math.sqrt((norm_a ** 2 * norm_b ** 2 + inner ** 2) / (k * failure))
