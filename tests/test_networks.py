"""Network families: parameter counts against the source document, shapes, backbone / head split."""
from __future__ import annotations

import pytest
import torch

from tanas_core.networks import ARCHITECTURES, SOURCE_PARAMETERS_M, build_network, count_parameters

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_full_width_parameter_counts_match_source_within_5_percent(arch):
    millions = count_parameters(build_network(arch, num_classes=10)) / 1e6
    assert abs(millions - SOURCE_PARAMETERS_M[arch]) / SOURCE_PARAMETERS_M[arch] < 0.05, millions


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_backbone_head_split(arch, channels):
    torch.manual_seed(0)
    model = build_network(arch, num_classes=4, in_channels=channels, width=0.125).eval()
    x = torch.randn(3, channels, 32, 32)
    features = model.backbone(x)
    assert features.shape == (3, model.feature_dim)
    assert torch.allclose(model(x), model.head(features))
    assert model.head.out_features == 4
    assert not any(name.startswith("head") for name, _ in model.backbone.named_parameters())


def test_width_scales_parameters():
    small = count_parameters(build_network("vgg16", 10, width=0.25))
    full = count_parameters(build_network("vgg16", 10, width=1.0))
    assert 10 < full / small < 20  # conv parameters scale with width squared


def test_builder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown architecture 'alexnet'"):
        build_network("alexnet", 10)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        build_network("vgg16", 1)
    with pytest.raises(ValueError, match="in_channels"):
        build_network("vgg16", 10, in_channels=4)
