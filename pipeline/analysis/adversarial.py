"""A classifier's penultimate representations of clean images and of their PGD examples, and input gradients.

PGD here is the evaluation attack: L-inf, cross-entropy on the true label, model in eval mode, a uniform random
start and `steps` sign-gradient steps of 2.5 * eps / steps (Madry et al.'s rule). The start is drawn per batch
from a generator seeded by (seed, batch start), so results repeat exactly at a fixed batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dra_pipeline.losses import uniform_start
from dra_pipeline.models import Classifier
from dra_pipeline.pgd import pgd_linf
from dra_pipeline.seeding import keyed_generator

PGD_STEPS = 20  # iterations of the evaluation attack
STEP_FACTOR = 2.5  # step = STEP_FACTOR * eps / steps


@dataclass(frozen=True)
class Views:
    """One set of images seen by the classifier: all tensors on the CPU, float32."""

    x: Tensor  # (N, C, H, W) clean images in [0, 1]
    y: Tensor  # (N,) labels
    x_adv: Tensor  # (N, C, H, W) PGD examples, |x_adv - x|_inf <= eps
    features: Tensor  # (N, D) penultimate representation of x
    adv_features: Tensor  # (N, D) penultimate representation of x_adv
    logits: Tensor  # (N, classes) of x
    adv_logits: Tensor  # (N, classes) of x_adv

    @property
    def accuracy(self) -> float:
        return float((self.logits.argmax(1) == self.y).double().mean())

    @property
    def adv_accuracy(self) -> float:
        return float((self.adv_logits.argmax(1) == self.y).double().mean())


def pgd_views(
    model: Classifier, x: Tensor, y: Tensor, *, eps: float, steps: int = PGD_STEPS, seed: int = 0, batch_size: int = 256
) -> Views:
    """Clean and PGD representations of (x (N, C, H, W) in [0, 1], y (N,)) with `model` in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {k: [] for k in ("x_adv", "features", "adv_features", "logits", "adv_logits")}
    try:
        for a in range(0, len(x), batch_size):
            xb, yb = x[a : a + batch_size].to(device), y[a : a + batch_size].to(device)
            g = keyed_generator(seed, a, device=device)
            x_adv = pgd_linf(
                model,
                xb,
                lambda logits, yb=yb: F.cross_entropy(logits, yb),
                eps=eps,
                step=STEP_FACTOR * eps / max(steps, 1),
                steps=steps,
                random_start=uniform_start(eps, g),
            )
            with torch.no_grad():
                logits, feats = model.forward_with_features(xb)
                adv_logits, adv_feats = model.forward_with_features(x_adv)
            for k, v in zip(parts, (x_adv, feats, adv_feats, logits, adv_logits)):
                parts[k].append(v.float().cpu())
    finally:
        model.train(was_training)
    return Views(x=x.float().cpu(), y=y.long().cpu(), **{k: torch.cat(v) for k, v in parts.items()})


@torch.no_grad()
def representations(model: Classifier, x: Tensor, *, batch_size: int = 512) -> Tensor:
    """Penultimate representations (N, D) float32 on the CPU of images x (N, C, H, W) in [0, 1], eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [model.features(x[a : a + batch_size].to(device)).float().cpu() for a in range(0, len(x), batch_size)]
        )
    finally:
        model.train(was_training)


def input_gradients(model: Classifier, x: Tensor, y: Tensor, *, batch_size: int = 256) -> Tensor:
    """d CE(model(x), y) / dx (N, C, H, W) on the CPU, model in eval mode (per-image loss, summed)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for a in range(0, len(x), batch_size):
            xb = x[a : a + batch_size].to(device).requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[a : a + batch_size].to(device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            out.append(grad.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)
