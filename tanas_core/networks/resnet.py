"""ResNet-18 for 32x32 inputs: a 3x3 stem without max-pool (the CIFAR variant), four stages of two basic blocks."""
from __future__ import annotations

import torch
from torch import nn

from tanas_core.networks.common import BackboneHeadNet, scaled
from tanas_core.registry import ARCHITECTURES


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@ARCHITECTURES.register("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, width: float = 1.0) -> BackboneHeadNet:
    """ResNet-18. Input ``[N, in_channels, H, W]`` -> logits ``[N, num_classes]``.

    ``width`` multiplies every stage's channel count; at 1.0 with 10 classes it has 11.17 M parameters.
    """
    stem = scaled(64, width)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                               nn.ReLU(inplace=True)]
    channels = stem
    for stage, base in enumerate((64, 128, 256, 512)):
        out = scaled(base, width)
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, out, stride))
            channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    config = dict(num_classes=num_classes, in_channels=in_channels, width=width)
    return BackboneHeadNet(nn.Sequential(*layers), channels, num_classes, "resnet18", config)
