"""Training objectives: TRADES and PGD-AT as DM-AT runs them, and the DRA alignment term.

DRA (Huang, Chen, Lin 2026):  L = L_TRADES + lambda * (1 - cos(h(f(x_adv)), z(x)))
with f the classifier's penultimate representation, h a trainable projection head, z(x) the teacher's cached
pooled feature of the clean image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.models import Classifier
from dra_pipeline.pgd import frozen_bn_stats, pgd_linf


@dataclass
class StepOutput:
    loss: Tensor  # scalar to minimise (without the DRA term)
    logits_clean: Tensor  # (N, classes)
    logits_adv: Tensor  # (N, classes)
    features_adv: Tensor  # (N, feature_dim): what the DRA head reads


def uniform_start(eps: float, generator: torch.Generator | None, part: tuple[int, int] = (0, 1)):
    """x -> x + U(-eps, eps). With part = (rank, world), x is slice `rank` of a global batch of world * len(x)
    images and gets that slice of the global batch's noise, so the start does not depend on the process count."""
    rank, world = part

    def start(x: Tensor) -> Tensor:
        n = x.shape[0]
        noise = torch.rand((world * n, *x.shape[1:]), device=x.device, generator=generator, dtype=x.dtype)
        return x + (2 * noise[rank * n : (rank + 1) * n] - 1) * eps

    return start


# ---- TRADES (Zhang et al. 2019, eq. 5) as in DM-AT: KL attack from x + U(-eps, eps), label smoothing ----------
def trades(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    beta: float,
    label_smoothing: float,
    generator: torch.Generator | None = None,
    part: tuple[int, int] = (0, 1),
) -> StepOutput:
    """CE_smooth(f(x), y) + beta * KL(f(x_adv) || f(x)) / N, x_adv from `steps` sign-gradient steps on the KL."""
    with torch.no_grad(), frozen_bn_stats(model):
        p_clean = F.softmax(model(x), dim=1)
    x_adv = pgd_linf(
        model,
        x,
        lambda logits: F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="sum"),
        eps=eps,
        step=step,
        steps=steps,
        random_start=uniform_start(eps, generator, part),
    )
    logits_clean = model(x)
    logits_adv, features_adv = model.forward_with_features(x_adv)
    natural = F.cross_entropy(logits_clean, y, label_smoothing=label_smoothing)
    robust = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="sum") / x.shape[0]
    return StepOutput(natural + beta * robust, logits_clean, logits_adv, features_adv)


# ---- PGD-AT (Madry et al. 2018): cross-entropy on the worst case found by PGD --------------------------------
def pgd_at(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    label_smoothing: float,
    generator: torch.Generator | None = None,
    part: tuple[int, int] = (0, 1),
) -> StepOutput:
    x_adv = pgd_linf(
        model,
        x,
        lambda logits: F.cross_entropy(logits, y),
        eps=eps,
        step=step,
        steps=steps,
        random_start=uniform_start(eps, generator, part),
    )
    logits_adv, features_adv = model.forward_with_features(x_adv)
    with torch.no_grad(), frozen_bn_stats(model):
        logits_clean = model(x)
    return StepOutput(
        F.cross_entropy(logits_adv, y, label_smoothing=label_smoothing), logits_clean, logits_adv, features_adv
    )


# ---- DRA ---------------------------------------------------------------------------------------------------------
class ProjectionHead(nn.Module):
    """h: Linear -> SiLU -> Linear -> SiLU -> Linear (as in REPA), feature_dim -> teacher dim."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out_dim)
        )
        for layer in self.net:  # REPA's initialisation of its projector
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)

    @staticmethod
    def target_dim(state: dict[str, Tensor]) -> int:
        """The teacher-feature width a saved head (its state dict) projects to."""
        return int(state["net.4.weight"].shape[0])


def alignment_loss(projected: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of 1 - cos(projected_i, target_i); projected (N, dim), target (N, dim), or (N, K, dim) for
    K targets per image (the mean of the K cosine terms). In [0, 2]."""
    if target.dim() == 3:
        projected = projected.unsqueeze(1).expand_as(target)
    return (1 - F.cosine_similarity(projected, target.to(projected.dtype), dim=-1, eps=1e-8)).mean()
