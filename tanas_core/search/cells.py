"""Networks built from a genotype of a cell search space (see ``search_space.py``).

``cell_network(genotype, num_classes, in_channels)`` -> ``BackboneHeadNet`` (arch ``"cellnet"``), the same
backbone / head split as the hand-designed families, so everything downstream (training, Fisher) treats them alike.
The operations follow DARTS: ReLU-Conv-BN ordering, separable convolutions applied twice, dilated convolutions with
dilation 2; in a reduction cell the edges leaving the cell inputs have stride 2.
"""
from __future__ import annotations

import torch
from torch import nn

from tanas_core.errors import TanasError
from tanas_core.networks.common import BackboneHeadNet
from tanas_core.search.space import CELL_INPUTS, Cell, Genotype


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                 groups: int = 1):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out))


class _DilConv(nn.Sequential):
    """Depthwise (dilated) ``kernel`` x ``kernel`` then pointwise 1x1, ReLU first, BN last."""

    def __init__(self, c: int, kernel: int, stride: int, dilation: int):
        padding = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class _SepConv(nn.Sequential):
    """Two depthwise-separable convolutions (the first carries the stride), as in DARTS."""

    def __init__(self, c: int, kernel: int, stride: int):
        super().__init__(_DilConv(c, kernel, stride, 1), _DilConv(c, kernel, 1, 1))


class _Conv7x1_1x7(nn.Sequential):
    def __init__(self, c: int, stride: int):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
                         nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False), nn.BatchNorm2d(c))


class _Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class _FactorizedReduce(nn.Module):
    """Halve the spatial size without dropping pixels: two stride-2 1x1 convolutions, one shifted by a pixel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def make_operation(name: str, channels: int, stride: int) -> nn.Module:
    """The module of operation ``name`` on ``channels`` channels; ``stride`` 1 keeps the size, 2 halves it."""
    if name == "none":
        return _Zero(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else _FactorizedReduce(channels, channels)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return _SepConv(channels, int(name[-1]), stride)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return _DilConv(channels, int(name[-1]), stride, 2)
    if name == "conv_7x1_1x7":
        return _Conv7x1_1x7(channels, stride)
    raise TanasError(f"unknown operation {name!r}")


class CellModule(nn.Module):
    """One cell: preprocess the two inputs to ``channels``, run the DAG, concatenate the intermediate nodes."""

    def __init__(self, cell: Cell, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.preprocess0 = (_FactorizedReduce(c_prev_prev, channels) if reduction_prev
                            else _ReLUConvBN(c_prev_prev, channels, 1, 1, 0))
        self.preprocess1 = _ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.sources = [source for node in cell.nodes for _, source in node]
        self.edges = nn.ModuleList(make_operation(op, channels, 2 if reduction and source < CELL_INPUTS else 1)
                                   for node in cell.nodes for op, source in node)
        self.out_channels = channels * len(cell.nodes)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(0, len(self.edges), 2):
            states.append(self.edges[i](states[self.sources[i]]) + self.edges[i + 1](states[self.sources[i + 1]]))
        return torch.cat(states[CELL_INPUTS:], dim=1)


class CellBackbone(nn.Module):
    """Stem (3x3 conv + BN) -> cells -> global average pooling: images ``[N, C, H, W]`` -> ``[N, feature_dim]``."""

    def __init__(self, genotype: Genotype, in_channels: int):
        super().__init__()
        skeleton = genotype.skeleton
        stem = skeleton.channels * skeleton.stem_multiplier
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        c_prev_prev, c_prev, channels, reduction_prev = stem, stem, skeleton.channels, False
        self.cells = nn.ModuleList()
        for index in range(skeleton.cells):
            reduction = index in skeleton.reductions
            channels = channels * 2 if reduction else channels
            cell = CellModule(genotype.reduce if reduction else genotype.normal, c_prev_prev, c_prev, channels,
                              reduction, reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev, reduction_prev = c_prev, cell.out_channels, reduction
        self.feature_dim = c_prev
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.pool(s1).flatten(1)


def cell_network(genotype: Genotype, num_classes: int, in_channels: int = 3) -> BackboneHeadNet:
    """The network of ``genotype`` for ``num_classes`` outputs on ``in_channels``-channel images of any size >= 4."""
    if num_classes < 2:
        raise TanasError(f"a network needs at least 2 outputs, got num_classes={num_classes}")
    if in_channels < 1:
        raise TanasError(f"in_channels must be >= 1, got {in_channels}")
    backbone = CellBackbone(genotype, in_channels)
    return BackboneHeadNet(backbone, backbone.feature_dim, num_classes, "cellnet",
                           dict(genotype=genotype.to_dict(), num_classes=num_classes, in_channels=in_channels))
