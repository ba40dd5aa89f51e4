"""DenseNet-121 (BC: bottleneck + compression 0.5) for 32x32 inputs, with a 3x3 stem as in the CIFAR variant."""
from __future__ import annotations

import torch
from torch import nn

from tanas_core.networks.common import BackboneHeadNet, scaled
from tanas_core.registry import ARCHITECTURES


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k channels) then BN-ReLU-3x3 conv (k channels); its output is appended to its input."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv that halves the channels, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(torch.relu(self.bn(x))))


@ARCHITECTURES.register("densenet121")
def densenet121(num_classes: int, in_channels: int = 3, width: float = 1.0) -> BackboneHeadNet:
    """DenseNet-121 (blocks of 6, 12, 24, 16 layers). Input ``[N, in_channels, H, W]`` -> logits ``[N, num_classes]``.

    ``width`` multiplies the growth rate 32 (and so every channel count); at 1.0 with 10 classes it has 6.96 M
    parameters.
    """
    growth = scaled(32, width)
    channels = 2 * growth
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
    for index, depth in enumerate((6, 12, 24, 16)):
        for _ in range(depth):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        if index < 3:
            reduced = channels // 2
            layers.append(Transition(channels, reduced))
            channels = reduced
    layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    config = dict(num_classes=num_classes, in_channels=in_channels, width=width)
    return BackboneHeadNet(nn.Sequential(*layers), channels, num_classes, "densenet121", config)
