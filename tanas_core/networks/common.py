"""What every network family shares: a backbone that maps images to features and a linear head.

The split matters downstream: Fisher information is computed on the backbone (the head is task-specific and is
refitted when a baseline network is evaluated on another task's data).
"""
from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by the width multiplier ``width``, never below 1."""
    return max(1, int(round(channels * width)))


class BackboneHeadNet(nn.Module):
    """``head(backbone(x))``: images ``[N, C, H, W]`` -> features ``[N, feature_dim]`` -> logits ``[N, num_classes]``.

    Attributes:
        backbone: image -> flat feature vector (ends with global average pooling, so any H, W >= 1 pass).
        head: ``nn.Linear(feature_dim, num_classes)``.
        arch: family name (``"vgg16"``, ``"resnet18"``, ``"densenet121"``).
        config: the constructor arguments, enough to rebuild an identical network.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, arch: str, config: dict):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.arch = arch
        self.config = dict(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output ``[N, feature_dim]`` for images ``[N, C, H, W]``."""
        return self.backbone(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
