"""WideResNet as DM-AT builds it (after Gowal et al. 2020): pre-activation blocks, SiLU, BN momentum 0.01,
asymmetric padding on strided convolutions, input normalisation inside, convolutions initialised He-normal with
fan_out and the linear bias at zero. depth = 6 n + 4; widths 16, 16k, 32k, 64k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.models.base import Classifier

BN_MOMENTUM = 0.01  # DM-AT's value; PyTorch's default is 0.1


class _Block(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.act0 = act()
        self.conv0 = nn.Conv2d(in_planes, out_planes, 3, stride, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.act1 = act()
        self.conv1 = nn.Conv2d(out_planes, out_planes, 3, 1, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False) if in_planes != out_planes else None
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act0(self.bn0(x))
        # With a projection shortcut, the shortcut too reads the pre-activated input.
        residual_in = pre if self.shortcut is not None else x
        padded = F.pad(pre, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))  # TF-style "SAME" for stride 2
        out = self.conv1(self.act1(self.bn1(self.conv0(padded))))
        return out + (self.shortcut(residual_in) if self.shortcut is not None else residual_in)


class WideResNet(Classifier):
    def __init__(
        self,
        *,
        depth: int,
        width: int,
        num_classes: int,
        in_channels: int = 3,
        mean: Sequence[float],
        std: Sequence[float],
        act: type[nn.Module] = nn.SiLU,
    ):
        super().__init__(mean, std)
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        blocks = []
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(
                    _Block(
                        widths[group] if i == 0 else widths[group + 1], widths[group + 1], stride if i == 0 else 1, act
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3], momentum=BN_MOMENTUM)
        self.act = act()
        self.feature_dim = widths[3]
        self.head = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # DM-AT's initialisation (He normal with fan_out; the linear layer's bias only)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        out = self.act(self.bn(self.blocks(self.init_conv(self.normalise(x)))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
