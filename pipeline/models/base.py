"""The classifier contract: logits = head(features(x)); features are the penultimate representation.

Inputs are images in [0, 1] (N, C, H, W); each model normalises inside (mean/std buffers), as DM-AT's do, so
attacks work in pixel space. `feature_dim` is the width DRA's projection head reads.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Classifier(nn.Module):
    feature_dim: int
    head: nn.Module

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    @abstractmethod
    def features(self, x: Tensor) -> Tensor:
        """Images in [0, 1] (N, C, H, W) -> penultimate representation (N, feature_dim)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (N, classes), features (N, feature_dim)) in one pass."""
        f = self.features(x)
        return self.head(f), f
