"""VGG-16 with batch norm for 32x32 inputs (the CIFAR variant: 13 conv layers, 5 max-pools, one linear head)."""
from __future__ import annotations

from torch import nn

from tanas_core.networks.common import BackboneHeadNet, scaled
from tanas_core.registry import ARCHITECTURES

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@ARCHITECTURES.register("vgg16")
def vgg16(num_classes: int, in_channels: int = 3, width: float = 1.0) -> BackboneHeadNet:
    """VGG-16-BN. Input ``[N, in_channels, 32, 32]`` -> logits ``[N, num_classes]``.

    ``width`` multiplies every conv's channel count; at 1.0 with 10 classes it has 14.73 M parameters.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for item in _VGG16:
        if item == "M":
            # Pool only while there is room, so inputs smaller than 32x32 still pass.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        out = scaled(item, width)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    config = dict(num_classes=num_classes, in_channels=in_channels, width=width)
    return BackboneHeadNet(nn.Sequential(*layers), channels, num_classes, "vgg16", config)
