"""L-inf PGD as adversarial training uses it (TRADES / Madry et al.), with BN statistics left untouched.

DM-AT attacks in train mode (BN normalises with batch statistics, dropout active) but must not update BN's
running statistics while it does: `frozen_bn_stats` sets every BN momentum to 0 for the attack and restores it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def batch_norm_momentum(model: nn.Module, momentum: float) -> Iterator[None]:
    """Within the block every batch-norm layer of `model` updates its running statistics with `momentum` (0: not at
    all, 1: replaced by the batch's); momenta and batch counts are restored afterwards."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None))
            m.momentum = momentum
    try:
        yield
    finally:
        for m, previous, tracked in saved:
            m.momentum = previous
            if tracked is not None and momentum == 0.0:
                m.num_batches_tracked.copy_(tracked)


def frozen_bn_stats(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Within the block, batch norm layers normalise as usual but leave running_mean/var unchanged."""
    return batch_norm_momentum(model, 0.0)


def cw_loss(logits: Tensor, y: Tensor) -> Tensor:
    """DM-AT's CW margin loss for attacks: the sum over the batch of -max(z_y - max_{k != y} z_k, 0); maximising it
    pushes each point across the decision boundary, after which its gradient is zero."""
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    real = (onehot * logits).sum(1)
    other = ((1 - onehot) * logits - onehot * 10000.0).max(1)[0]
    return -torch.clamp(real - other, min=0).sum()


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    loss: Callable[[Tensor], Tensor],
    *,
    eps: float,
    step: float,
    steps: int,
    random_start: Callable[[Tensor], Tensor],
) -> Tensor:
    """Maximise loss(model(x_adv)) over the L-inf ball: returns x_adv (detached) with |x_adv - x|_inf <= eps,
    0 <= x_adv <= 1. loss maps logits to a scalar. random_start(x) gives the starting point (e.g. x + U(-eps, eps)
    or x + 0.001 N(0, 1) as TRADES does). BN running statistics are not updated; model.training is unchanged.
    """
    x = x.detach()
    x_adv = random_start(x).clamp(0, 1).detach()
    with frozen_bn_stats(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(model(x_adv)), x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()
