"""Fisher and distances against brute-force references: per-sample loops, dense n x n matrices, slogdet, sqrtm."""
from __future__ import annotations

import math

import pytest
import torch

from tanas_core.distances.metrics import frechet_distance, logdet_distance, logdet_per_parameter
from tanas_core.fisher.matrices import (
    FisherFactor,
    diagonal_fisher,
    fisher_factor,
    per_sample_gradients_loop,
    sample_model_labels,
    sketch_error_bound,
)
from tanas_core.networks import build_network


def _small_net(arch: str, channels: int = 3, classes: int = 3, seed: int = 0, width: float = 0.0625):
    torch.manual_seed(seed)
    model = build_network(arch, classes, channels, width=width)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(3):
            model(torch.randn(32, channels, 32, 32))
    return model.eval()


@pytest.mark.unit
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("arch", ["vgg16", "resnet18", "densenet121"])
def test_per_sample_gradients_equal_a_loop(arch, layout):
    """Every layer kind of the three architectures (DenseNet's 1 x 1 convolutions included), in the default layout
    and in the channels-last one the report's Fisher pass uses on a CPU."""
    model = _small_net(arch)
    x, y = torch.randn(7, 3, 32, 32), torch.randint(0, 3, (7,))
    reference = per_sample_gradients_loop(model, x, y, params="all")
    model, x = model.to(memory_format=layout), x.contiguous(memory_format=layout)
    factor = fisher_factor(model, x, y, params="all", batch_size=3)
    assert factor.shape == reference.shape
    torch.testing.assert_close(factor, reference, rtol=1e-3, atol=1e-5 * float(reference.abs().max()))
    diagonal = diagonal_fisher(model, x, y, params="all", batch_size=2)
    torch.testing.assert_close(diagonal, reference.pow(2).mean(0), rtol=1e-3, atol=1e-7)


@pytest.mark.unit
@pytest.mark.parametrize("arch", ["vgg16", "densenet121"])
def test_grouped_diagonals_are_each_piece_of_samples_on_its_own(arch):
    # 10 samples in 3 pieces (4, 3, 3) through chunks of 4 that straddle the pieces' borders
    model = _small_net(arch)
    x, y = torch.randn(10, 3, 32, 32), torch.randint(0, 3, (10,))
    squares = per_sample_gradients_loop(model, x, y).pow(2)
    grouped = diagonal_fisher(model, x, y, batch_size=4, groups=3)
    reference = torch.stack([squares[piece].mean(0) for piece in torch.tensor_split(torch.arange(10), 3)])
    assert grouped.shape == reference.shape
    torch.testing.assert_close(grouped, reference, rtol=1e-3, atol=1e-7)
    with pytest.raises(ValueError, match="groups must be between 1 and the number of samples"):
        diagonal_fisher(model, x, y, groups=11)


@pytest.mark.unit
def test_model_fisher_uses_the_sampled_labels():
    model = _small_net("resnet18", channels=1)
    x = torch.randn(9, 1, 32, 32)
    labels = sample_model_labels(model, x, batch_size=4, seed=5)
    reference = per_sample_gradients_loop(model, x, labels)
    diagonal = diagonal_fisher(model, x, kind="model", batch_size=4, seed=5)
    torch.testing.assert_close(diagonal, reference.pow(2).mean(0), rtol=1e-3, atol=1e-7)
    assert torch.equal(labels, sample_model_labels(model, x, batch_size=4, seed=5))


@pytest.mark.unit
def test_backbone_selection_excludes_the_head_and_restores_the_model():
    model = _small_net("vgg16")
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    backbone = diagonal_fisher(model, x, y)
    everything = diagonal_fisher(model, x, y, params="all")
    head = sum(p.numel() for p in model.head.parameters())
    assert everything.numel() - backbone.numel() == head
    torch.testing.assert_close(everything[: backbone.numel()], backbone)
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.unit
def test_bad_fisher_inputs_raise_clear_errors():
    model = _small_net("vgg16")
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match="0 samples"):
        diagonal_fisher(model, x[:0], y[:0])
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        diagonal_fisher(model, bad, y)
    with pytest.raises(ValueError, match="needs targets"):
        diagonal_fisher(model, x)
    with pytest.raises(ValueError, match="kind must be"):
        diagonal_fisher(model, x, y, kind="true")
    with pytest.raises(ValueError, match="params must be"):
        diagonal_fisher(model, x, y, params="head")


def _dense_sqrtm(matrix):
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def _dense_frechet(f_b, f_t):
    f_b, f_t = f_b / torch.trace(f_b), f_t / torch.trace(f_t)
    root = _dense_sqrtm(f_b)
    cross = _dense_sqrtm(root @ f_t @ root)  # tr((F_b F_t)^(1/2)) = tr((F_b^(1/2) F_t F_b^(1/2))^(1/2))
    return math.sqrt(max(0.0, float(torch.trace(f_b + f_t - 2 * cross)))) / math.sqrt(2)


def test_low_rank_logdet_and_full_frechet_equal_dense_formulas_on_a_real_network():
    model = _small_net("vgg16", channels=1, classes=4, width=1 / 64)
    n = sum(p.numel() for name, p in model.named_parameters() if name.startswith("backbone."))
    assert n < 5000  # small enough to form the n x n matrices
    x = torch.randn(24, 1, 32, 32)
    g_b = fisher_factor(model, x, torch.randint(0, 4, (24,), generator=torch.Generator().manual_seed(1)))
    g_t = fisher_factor(model, torch.randn(16, 1, 32, 32) * 2 + 1,
                        torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(2)))
    dense_b = g_b.double().T @ g_b.double() / 24
    dense_t = g_t.double().T @ g_t.double() / 16
    sigma = 0.05
    identity = torch.eye(n, dtype=torch.float64)
    dense_logdet = abs(torch.linalg.slogdet(dense_b + sigma ** 2 * identity)[1].item() / n
                       - torch.linalg.slogdet(dense_t + sigma ** 2 * identity)[1].item() / n)
    assert logdet_distance(g_b, g_t, sigma) == pytest.approx(dense_logdet, rel=1e-6)
    # Compare d^2 = 1 - fidelity: the square root amplifies rounding near 0, its square does not. The dense
    # reference itself loses ~1e-6 relative (square roots of thousands of near-zero eigenvalues of an n x n matrix).
    dense = _dense_frechet(dense_b, dense_t)
    assert dense > 0.05  # a case that is not degenerate
    assert frechet_distance(g_b, g_t) ** 2 == pytest.approx(dense ** 2, rel=1e-5)
    diagonal_b = torch.diagonal(dense_b).float()
    mixed = _dense_frechet(torch.diag(dense_b.diagonal()), dense_t)
    assert frechet_distance(diagonal_b, g_t) ** 2 == pytest.approx(mixed ** 2, rel=1e-5)


@pytest.mark.unit
def test_logdet_handles_different_sizes_and_more_samples_than_parameters():
    torch.manual_seed(0)
    tall = torch.randn(50, 10, dtype=torch.float64)  # M > n: the n x n path
    dense = tall.T @ tall / 50
    expected = torch.linalg.slogdet(dense + 0.01 * torch.eye(10, dtype=torch.float64))[1].item() / 10
    assert logdet_per_parameter(tall, 0.1) == pytest.approx(expected, rel=1e-9)
    diagonal = torch.rand(30)
    assert logdet_per_parameter(diagonal, 0.1) == pytest.approx(float(torch.log(diagonal.double() + 0.01).mean()))
    assert logdet_distance(torch.rand(30), torch.rand(7, 12), 0.1) >= 0  # n != m is allowed (equation 5)


@pytest.mark.unit
def test_distance_properties():
    torch.manual_seed(0)
    g = torch.randn(8, 40)
    diagonal = torch.rand(40)
    assert logdet_distance(g, g, 1e-2) == 0.0
    assert frechet_distance(g, g) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(diagonal, diagonal) == pytest.approx(0.0, abs=1e-7)
    for _ in range(20):
        a, b = torch.rand(40) ** 4, torch.rand(40) ** 4
        assert 0.0 <= frechet_distance(a, b) <= 1.0
        assert 0.0 <= frechet_distance(torch.randn(5, 40), torch.randn(6, 40)) <= 1.0
    disjoint = frechet_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert disjoint == pytest.approx(1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: logdet_distance(torch.rand(5), torch.rand(5), 0.0), "sigma must be a positive"),
    (lambda: logdet_distance(torch.rand(5), torch.rand(5), -1.0), "sigma must be a positive"),
    (lambda: logdet_distance(torch.tensor([1.0, float("nan")]), torch.rand(2), 0.1), "NaN or Inf"),
    (lambda: frechet_distance(torch.rand(5), torch.tensor([float("inf")] * 5)), "NaN or Inf"),
    (lambda: logdet_distance(torch.rand(3, 4), torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 0.1), "NaN or Inf"),
    (lambda: logdet_distance(torch.full((6, 2), float("inf")), torch.rand(2), 0.1), "NaN or Inf"),
    (lambda: frechet_distance(torch.rand(3, 4), torch.tensor([[0.0, 1.0, 2.0, float("-inf")]])), "NaN or Inf"),
    (lambda: frechet_distance(torch.tensor([[float("nan"), 1.0]]), torch.rand(2)), "NaN or Inf"),
    (lambda: frechet_distance(torch.rand(5), torch.rand(6)), "same parameters, got n = 5 and n = 6"),
    (lambda: frechet_distance(torch.rand(0), torch.rand(0)), "empty"),
    (lambda: frechet_distance(torch.rand(2, 2, 2), torch.rand(2)), "1-D \\(diagonal\\) or 2-D"),
    (lambda: frechet_distance(torch.zeros(4), torch.rand(4)), "zero trace"),
    (lambda: frechet_distance([1.0], torch.rand(1)), "must be a Fisher diagonal"),
])
@pytest.mark.unit
def test_bad_distance_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.unit
def test_mismatched_architectures_are_refused_for_frechet():
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    vgg = diagonal_fisher(_small_net("vgg16"), x, y)
    resnet = diagonal_fisher(_small_net("resnet18"), x, y)
    with pytest.raises(ValueError, match="same architecture"):
        frechet_distance(vgg, resnet)
    assert logdet_distance(vgg, resnet, 0.01) >= 0  # log-det allows n != m


@pytest.mark.unit
def test_sketched_factor_error_stays_inside_its_bound():
    model = _small_net("resnet18")
    x, y = torch.randn(12, 3, 32, 32), torch.randint(0, 3, (12,))
    exact = fisher_factor(model, x, y).double()
    k = 4096
    sketched = fisher_factor(model, x, y, projection_dim=k, seed=11)
    assert isinstance(sketched, FisherFactor) and sketched.matrix.shape == (12, k)
    assert sketched.num_params == exact.shape[1]
    gram, approx = exact @ exact.T, sketched.matrix.double() @ sketched.matrix.double().T
    norms = exact.norm(dim=1)
    failures, pairs = 0, 0
    for i in range(12):
        for j in range(12):
            pairs += 1
            bound = sketch_error_bound(float(norms[i]), float(norms[j]), float(gram[i, j]), k, failure=0.05)
            failures += int(abs(float(approx[i, j] - gram[i, j])) > bound)
    assert failures <= max(1, int(0.05 * pairs))  # each bound holds with probability >= 95 %
    # Distances on sketched factors stay close to the exact ones.
    other = fisher_factor(model, x.flip(0), y, projection_dim=k, seed=11)
    exact_other = fisher_factor(model, x.flip(0), y)
    assert abs(frechet_distance(sketched, other) - frechet_distance(exact, exact_other)) < 0.05
    with pytest.raises(ValueError, match="different sketches"):
        frechet_distance(sketched, fisher_factor(model, x, y, projection_dim=k, seed=12))


@pytest.mark.unit
def test_per_sample_gradients_of_a_cell_network_equal_a_loop(monkeypatch):
    """Depthwise, dilated and strided convolutions (the grouped weight-gradient path) and layers split into pieces
    of a few samples give the loop's gradients."""
    import random

    import tanas_core.fisher.matrices as fisher
    from tanas_core.search.cells import cell_network
    from tanas_core.search.space import standard_space

    genotype = standard_space().sample(random.Random(3))
    torch.manual_seed(0)
    model = cell_network(genotype, 3, 1).eval()
    x, y = torch.randn(5, 1, 28, 28), torch.randint(0, 3, (5,))
    reference = per_sample_gradients_loop(model, x, y, params="all")
    monkeypatch.setattr(fisher, "_PIECE_ELEMENTS", 64)  # every layer in pieces of one or a few samples
    factor = fisher_factor(model, x, y, params="all", batch_size=4)
    torch.testing.assert_close(factor, reference, rtol=1e-3, atol=1e-5 * float(reference.abs().max()))
    diagonal = diagonal_fisher(model, x, y, params="all", batch_size=3)
    torch.testing.assert_close(diagonal, reference.pow(2).mean(0), rtol=1e-3, atol=1e-7)
