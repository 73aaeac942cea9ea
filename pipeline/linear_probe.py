"""A linear probe: multinomial logistic regression on standardised features, fitted by full-batch L-BFGS in float64
(deterministic), kept as a module so that PGD can differentiate through it. `teacher probe` and `analyze` share it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

PROBE_WEIGHT_DECAY = 1e-3  # L2 on the weights of standardised features, added to the mean cross-entropy
PROBE_MAX_ITER = 500  # cap on L-BFGS iterations; its own tolerances usually end the (convex) fit first


class LinearProbe(nn.Module):
    """logits = W^T standardise(z) + b for features z (N, dim); float64 inside, differentiable in z."""

    def __init__(self, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("weight", weight)  # (dim, classes)
        self.register_buffer("bias", bias)  # (classes,)

    def forward(self, z: Tensor) -> Tensor:
        return ((z.double() - self.mean) / self.std) @ self.weight + self.bias


def fit_linear_probe(
    x: Tensor, y: Tensor, *, num_classes: int, weight_decay: float = PROBE_WEIGHT_DECAY, max_iter: int = PROBE_MAX_ITER
) -> LinearProbe:
    """Multinomial logistic regression on features x (N, D), labels y (N,) int.

    Features are standardised with the train mean and std (constant features stay 0); the weights start at 0
    and are fitted by full-batch L-BFGS in float64, so the result is deterministic.
    """
    x = x.double()
    mean, std = x.mean(0), x.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    xs = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight + bias, y.long())
        loss = loss + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    weight_decay: float = PROBE_WEIGHT_DECAY,
    max_iter: int = PROBE_MAX_ITER,
) -> float:
    """Test accuracy in [0, 1] of `fit_linear_probe` on (N, D) features, labels (N,) int."""
    classes = int(max(train_y.max(), test_y.max())) + 1
    probe = fit_linear_probe(train_x, train_y, num_classes=classes, weight_decay=weight_decay, max_iter=max_iter)
    with torch.no_grad():
        return float((probe(test_x).argmax(1) == test_y.long()).double().mean())
