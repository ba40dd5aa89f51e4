"""Stage 2, networks: one builder per architecture (``vgg16``, ``resnet18``, ``densenet121``), all with the
signature ``builder(num_classes, in_channels=3, width=1.0) -> BackboneHeadNet`` and a ``backbone`` / ``head``
split. Each module registers its builder in ``registry.ARCHITECTURES``; importing this package registers them all
(adding an architecture: a module with a registered builder, imported here)."""
from __future__ import annotations

from tanas_core.networks.common import BackboneHeadNet, count_parameters

# isort: off
# registration order is the order every list shows: the source's VGG, ResNet, DenseNet
from tanas_core.networks.vgg import vgg16
from tanas_core.networks.resnet import resnet18
from tanas_core.networks.densenet import densenet121
# isort: on
from tanas_core.errors import TanasError
from tanas_core.registry import ARCHITECTURES

# Parameter counts (millions) that the source document's result tables give for the full-width networks.
SOURCE_PARAMETERS_M = {"vgg16": 14.72, "resnet18": 11.44, "densenet121": 6.95}


def build_network(arch: str, num_classes: int, in_channels: int = 3, width: float = 1.0) -> BackboneHeadNet:
    """Build ``arch`` (one of ``ARCHITECTURES``) for ``num_classes`` outputs and ``in_channels``-channel images."""
    builder = ARCHITECTURES[arch]
    if num_classes < 2:
        raise TanasError(f"a network needs at least 2 outputs, got num_classes={num_classes}")
    if in_channels not in (1, 3):
        raise TanasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if not 0 < width <= 4:
        raise TanasError(f"width must be in (0, 4], got {width}")
    return builder(num_classes=num_classes, in_channels=in_channels, width=width)


__all__ = ["ARCHITECTURES", "SOURCE_PARAMETERS_M", "BackboneHeadNet", "build_network", "count_parameters",
           "vgg16", "resnet18", "densenet121"]
