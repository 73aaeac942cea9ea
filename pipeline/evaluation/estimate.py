"""How long an evaluation will take, said before it starts: the model's speed measured on a few of the points, times
the passes each attack makes per point at its standard settings (evaluation/attacks.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.evaluation.attacks import PGD_STEPS

SAMPLE = 32  # points timed
TARGETS = 9  # target classes of APGD-T and FAB-T in AutoAttack's standard version (fewer with fewer classes)


def passes(attack: str, num_classes: int) -> tuple[int, int]:
    """(gradient passes, forward-only passes) `attack` makes on a point that resists it: APGD-CE 100 steps x 1
    restart, APGD-T 100 steps per target class, FAB-T 100 steps per target class of a gradient and a forward
    each, Square 5000 queries, PGD its steps, FGSM one."""
    targets = max(1, min(TARGETS, num_classes - 1))
    return {
        "apgd-ce": (100, 0),
        "apgd-t": (100 * targets, 0),
        "fab-t": (100 * targets, 100 * targets),
        "square": (0, 5000),
        "pgd": (PGD_STEPS, 0),
        "fgsm": (1, 0),
    }[attack]


@dataclass(frozen=True)
class Estimate:
    n: int  # points to evaluate
    sample: int  # points timed
    forward_s: float  # seconds per image of a forward pass
    gradient_s: float  # seconds per image of a forward and backward pass
    correct: float  # share of the timed points classified correctly (the ones the attacks work on)
    low_s: float  # the timed share of points correct, each broken by the first attack
    high_s: float  # every point correct and resisting every attack

    def line(self, where: str, attacks: Sequence[str]) -> str:
        return (
            f"estimate: {duration(self.low_s)} to {duration(self.high_s)} on this {where} for {self.n:,} points "
            f"({', '.join(attacks)}): a gradient pass takes {1e3 * self.gradient_s:.1f} ms per image, measured on "
            f"{self.sample}, {100 * self.correct:.0f} % of them correct; the low end if the first attack breaks "
            "each correct point, the high end if every point resists every attack; pass --n to evaluate fewer"
        )


def estimate(
    model: nn.Module, images: Tensor, labels: Tensor, attacks: Sequence[str], *, num_classes: int, device
) -> Estimate:
    """Time a forward and a forward-backward pass of `model` (eval mode) on the first SAMPLE of images (N, C, H, W)
    in [0, 1] and scale by each attack's passes (`passes`) over all N points."""
    k = min(SAMPLE, len(images))
    x, y = images[:k].to(device), labels[:k].to(device)
    with torch.no_grad():
        model(x)  # warm-up: the first call allocates
        t0 = time.perf_counter()
        correct = (model(x).argmax(1) == y).float().mean().item()
        forward_s = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
    gradient_s = (time.perf_counter() - t0) / k
    del grad
    counts = [passes(a, num_classes) for a in attacks]
    first_g, first_f = counts[0] if counts else (0, 0)
    all_g, all_f = sum(c[0] for c in counts), sum(c[1] for c in counts)
    n, attacked = len(images), len(images) * correct
    clean = n * forward_s
    low = clean + attacked * (first_g * gradient_s + first_f * forward_s)
    high = clean + n * (all_g * gradient_s + all_f * forward_s)  # a bound: the timed share correct is a guess
    return Estimate(n, k, forward_s, gradient_s, correct, low, high)


def duration(seconds: float) -> str:
    """'40 s', '12 min', '2.3 h', '3.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
