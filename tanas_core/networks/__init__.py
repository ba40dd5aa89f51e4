"""Network families, one builder each (``vgg16``, ``resnet18``, ``densenet121``), all with the same signature
``builder(num_classes, in_channels=3, width=1.0) -> BackboneHeadNet`` and a ``backbone`` / ``head`` split."""
from __future__ import annotations

from .common import BackboneHeadNet, count_parameters
from .densenet import densenet121
from .resnet import resnet18
from .vgg import vgg16
from ..errors import TanasError

ARCHITECTURES = {"vgg16": vgg16, "resnet18": resnet18, "densenet121": densenet121}

# Parameter counts (millions) that the source document's result tables give for the full-width networks.
SOURCE_PARAMETERS_M = {"vgg16": 14.72, "resnet18": 11.44, "densenet121": 6.95}


def build_network(arch: str, num_classes: int, in_channels: int = 3, width: float = 1.0) -> BackboneHeadNet:
    """Build ``arch`` (one of ``ARCHITECTURES``) for ``num_classes`` outputs and ``in_channels``-channel images."""
    if arch not in ARCHITECTURES:
        raise TanasError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise TanasError(f"a network needs at least 2 outputs, got num_classes={num_classes}")
    if in_channels not in (1, 3):
        raise TanasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if not 0 < width <= 4:
        raise TanasError(f"width must be in (0, 4], got {width}")
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, width=width)


__all__ = ["ARCHITECTURES", "SOURCE_PARAMETERS_M", "BackboneHeadNet", "build_network", "count_parameters",
           "vgg16", "resnet18", "densenet121"]
