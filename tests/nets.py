"""CNNs defined for the tests: every pattern the tracer must handle, plus ones it must refuse or freeze."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 1, groups: int = 1, act: type = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, channels: int, expand: int):
        super().__init__()
        self.expand = conv_bn(channels, expand, 1, act=nn.ReLU6)
        self.dw = conv_bn(expand, expand, 3, groups=expand, act=nn.ReLU6)
        self.se = SqueezeExcite(expand, expand // 4)
        self.project = nn.Sequential(nn.Conv2d(expand, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.dw(self.expand(x))))


class TinyNet(nn.Module):
    """Grouped conv (searchable in whole conv groups; frozen with ``ConvertConfig(grouped=False)``), concat, BN on a
    concat, residual + depthwise + SE, flatten of a 2x2 map into an MLP."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, 16, 3)
        self.grouped = conv_bn(16, 16, 3, groups=2)
        self.left = conv_bn(16, 12, 1)
        self.right = conv_bn(16, 20, 3)
        self.merge_bn = nn.BatchNorm2d(32)
        self.reduce = conv_bn(32, 24, 1, act=nn.Hardswish)
        self.block = InvertedResidual(24, 48)
        self.head = conv_bn(24, 32, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(32 * 4, 64)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.stem(x))
        x = F.relu(self.merge_bn(torch.cat([self.left(x), self.right(x)], dim=1)))
        x = self.block(self.reduce(x))
        x = torch.flatten(self.pool(self.head(x)), 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class DataDependentGate(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace this."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x * 2
        return x


class NetWithUntraceablePart(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, 16, 3)
        self.gate = DataDependentGate()
        self.body = conv_bn(16, 32, 3)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.gate(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class UntraceableNet(NetWithUntraceablePart):
    """Its own forward branches on tensor values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if x.sum() > 0:
            x = x * 0.5
        return self.fc(self.body(x).mean((2, 3)))


class HardCodedView(nn.Module):
    """``view(-1, 32)`` bakes a channel count into the graph: that group must be frozen."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = conv_bn(3, 32, 3)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).view(-1, 32))


def tiny_net(num_classes: int = 10) -> TinyNet:
    return TinyNet(num_classes)


def untraceable_net(num_classes: int = 10) -> UntraceableNet:
    return UntraceableNet(num_classes)


def hard_coded_view(num_classes: int = 10) -> HardCodedView:
    return HardCodedView(num_classes)
