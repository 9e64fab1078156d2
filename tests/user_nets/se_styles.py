"""A small network written the way users write SE blocks, in three styles, for generic discovery tests.

Nothing here is registered with tilesearch: every block must be found from its own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvSE(nn.Module):
    """nn.AdaptiveAvgPool2d(1), 1x1 convolutions, nn.Sigmoid; the gate keeps its (B, C, 1, 1) shape."""

    def __init__(self, channels: int, reduced: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(torch.relu(self.reduce(self.pool(x)))))


class LinearSE(nn.Module):
    """x.mean((2, 3)) without keepdim, nn.Linear over channels, a view back to (B, C, 1, 1)."""

    def __init__(self, channels: int, reduced: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, reduced)
        self.fc2 = nn.Linear(reduced, channels)

    def forward(self, x):
        b, c, _, _ = x.size()
        y = x.mean((2, 3))
        y = self.fc2(F.relu(self.fc1(y))).view(b, c, 1, 1)
        return x * torch.sigmoid(y)


class FunctionalSE(nn.Module):
    """F.adaptive_avg_pool2d(x, 1) and a hard-sigmoid, the gate multiplied from the left."""

    def __init__(self, channels: int, reduced: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn = nn.BatchNorm2d(reduced)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return F.hardsigmoid(self.fc2(F.relu(self.bn(self.fc1(s))))) * x


class KeepdimMaxSE(nn.Module):
    """x.mean(..., keepdim=True) plus x.amax, as CBAM's channel gate, expanded to the input's shape."""

    def __init__(self, channels: int, reduced: int = 4) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, reduced, 1), nn.ReLU(), nn.Conv2d(reduced, channels, 1))

    def forward(self, x):
        gate = torch.sigmoid(self.mlp(x.mean((-2, -1), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        return x * gate.expand_as(x)


STYLES = (ConvSE, LinearSE, FunctionalSE, KeepdimMaxSE)


class Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, se: type[nn.Module], stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.se = se(out_channels)

    def forward(self, x):
        return self.se(F.relu(self.bn(self.conv(x))))


class StyledNet(nn.Module):
    """Four stages, one SE style each, and a head that pools globally (not a block: nothing gates)."""

    def __init__(self, num_classes: int = 10, styles: tuple[type[nn.Module], ...] = STYLES) -> None:
        super().__init__()
        widths = (16, 24, 32, 40)
        self.stem = nn.Conv2d(3, widths[0], 3, 2, 1)
        self.stages = nn.Sequential(*[
            Stage(widths[max(i - 1, 0)], width, style, 2 if i else 1) for i, (width, style) in enumerate(zip(widths, styles))
        ])
        self.head = nn.Linear(widths[len(styles) - 1], num_classes)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def build(num_classes: int = 10) -> nn.Module:
    return StyledNet(num_classes)


build.input_size = 64


def build_plain(num_classes: int = 10) -> nn.Module:
    """No channel attention at all: only the head's global pool."""
    return StyledNet(num_classes, styles=(lambda c: nn.Identity(),) * 4)


def build_not_a_module(num_classes: int = 10):
    return {"weights": 3}


def build_raises(num_classes: int = 10):
    raise ValueError("this network needs a config file")


def build_without_batchnorm(num_classes: int = 10) -> nn.Module:
    """The same network with every BatchNorm replaced by the identity: nothing for synthetic-bn to match."""
    model = StyledNet(num_classes)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            model.set_submodule(name, nn.Identity())
    return model


build_without_batchnorm.input_size = 64
