"""Hand-built models for the evaluation tests: a sensible one and models broken the ways real defences break.

Data: 10 classes of 1 x 8 x 8 images, each a fixed class prototype plus Gaussian noise. The sensible model is the
nearest-prototype classifier written as a linear layer (behind a batch norm that is the identity in eval mode):
deterministic, useful gradients, and broken by L-inf 0.1 on almost every point, so attacks have work to do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROTOTYPES = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(123)) * 0.3 + 0.35


def synthetic(n: int, seed: int = 2, spread: float = 0.1) -> tuple[Tensor, Tensor]:
    """n images (n, 1, 8, 8) in [0, 1] and labels (n,), classes in turn 0, 1, ..., 9, 0, ..."""
    y = torch.arange(n) % 10
    noise = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return (PROTOTYPES[y] + spread * noise).clamp(0, 1), y


class Prototypes(nn.Module):
    """logits_k = scale (2 <x, p_k> - |p_k|^2): the nearest prototype wins."""

    def __init__(self, scale: float = 4.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)  # running mean 0, variance 1: the identity in eval mode
        p = PROTOTYPES.flatten(1)
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.copy_(2 * scale * p)
            self.fc.bias.copy_(-scale * (p * p).sum(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.bn(x).flatten(1))


def sensible() -> nn.Module:
    return Prototypes().eval().requires_grad_(False)


class Rounded(nn.Module):
    """Gradient masking: inputs quantised to `levels` steps, so every input gradient is zero."""

    def __init__(self, net: nn.Module, levels: int = 8):
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.round(x * self.levels) / self.levels)


class Softmax(nn.Module):
    """Probabilities instead of logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).softmax(1)


class Noisy(nn.Module):
    """A random layer: Gaussian noise on the input at every forward."""

    def __init__(self, net: nn.Module, std: float = 0.05):
        super().__init__()
        self.net, self.std = net, std

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x + self.std * torch.randn_like(x))


def bn_in_train_mode() -> nn.Module:
    """The sensible model with its batch norm left in train mode: outputs depend on the rest of the batch."""
    model = sensible()
    model.bn.train()
    return model


class Memorising(nn.Module):
    """Games the attack budget: once the input is farther than `tau` (L-inf) from every stored point, it answers
    that point's label from memory, a path with zero gradient. Larger eps and longer attacks then look *less*
    successful."""

    def __init__(self, net: nn.Module, x: Tensor, y: Tensor, tau: float):
        super().__init__()
        self.net, self.x, self.y, self.tau = net, x, y, tau

    def forward(self, x: Tensor) -> Tensor:
        d = (x[:, None] - self.x[None]).flatten(2).abs().amax(2)  # (N, stored) L-inf distances
        memory = F.one_hot(self.y[d.argmin(1)], 10).float() * 10
        return torch.where((d.min(1).values > self.tau)[:, None], memory, self.net(x))
