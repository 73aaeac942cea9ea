"""PreAct-ResNet-18 (He et al. 2016, identity mappings), the usual CIFAR robustness baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.models.base import Classifier


class _PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_planes)
        self.conv0 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv1 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, planes, 1, stride, bias=False) if stride != 1 or in_planes != planes else None
        )

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn0(x))
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        return self.conv1(F.relu(self.bn1(self.conv0(pre)))) + shortcut


class PreActResNet18(Classifier):
    def __init__(self, *, num_classes: int, in_channels: int = 3, mean: Sequence[float], std: Sequence[float]):
        super().__init__(mean, std)
        self.conv = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        layers, planes_in = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_PreActBlock(planes_in, planes, stride), _PreActBlock(planes, planes, 1)]
            planes_in = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.feature_dim = 512
        self.head = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv(self.normalise(x)))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
