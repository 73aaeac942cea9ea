"""Stage three: robust accuracy as the per-point worst case over attacks (AutoAttack standard by default), with
the optional sanity checks. No paths here: the command resolves the checkpoint and points and writes reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.attacks import (
    AUTOATTACK_LOGGER,
    autoattack_flags,
    build_attack,
    check_norm,
    expand_attacks,
)
from dra_pipeline.evaluation.sanity import Check, EpsGrid, SanityConfig, eps_curve, run_sanity
from dra_pipeline.evaluation.state import EvaluationState
from dra_pipeline.evaluation.worst_case import Step, WorstCase, worst_case


@dataclass(frozen=True)
class Evaluation:
    norm: str
    eps: float
    seed: int
    batch_size: int
    device: str
    worst: WorstCase  # clean and robust flags per point, and the cascade's per-attack results
    flags: list[str]  # AutoAttack's warnings raised while attacking
    sanity: list[Check] | None  # None unless asked for
    seconds: float
    eps_grid: EpsGrid | None = None  # accuracy against eps, when asked for


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    rows: Tensor,
    *,
    attacks: str | Sequence[str],
    norm: str,
    eps: float,
    seed: int,
    batch_size: int,
    device: torch.device | str,
    state: EvaluationState | None = None,
    sanity: SanityConfig | None = None,
    eps_grid: Sequence[float] | None = None,
    progress: Callable[[Step], None] | None = None,
) -> Evaluation:
    """Clean accuracy and the worst case over `attacks` ('autoattack' = APGD-CE, APGD-T, FAB-T, Square) of
    `model` on images (N, C, H, W) in [0, 1] with labels (N,) and dataset rows (N,); `sanity` adds the checks,
    `eps_grid` (radii, pixels in [0, 1]) the accuracy against eps on the same points (sanity.eps_curve).

    The model must be in eval mode (it is never switched here). `state` resumes and records progress.
    """
    names = expand_attacks(attacks)
    check_norm(norm, names)
    if not eps > 0:
        raise DraError(f"eps must be positive (got {eps:g})")
    if batch_size < 1:
        raise DraError(f"batch size must be at least 1 (got {batch_size})")
    if model.training:
        raise DraError("the model is in train mode; evaluation needs model.eval()")
    t0 = time.perf_counter()
    with autoattack_flags(state.flags if state else ()) as flags:
        if state is not None:
            state.flags = flags  # the same list: saved with every batch, so a resumed run still reports them
        built = [build_attack(name, model, norm=norm, eps=eps, seed=seed, device=device) for name in names]
        worst = worst_case(
            model, images, labels, rows, built, batch_size=batch_size, device=device, state=state, progress=progress
        )
        _square_after_white_box(worst)
        if state is not None:
            state.save()
    checks = None
    if sanity is not None:
        checks = run_sanity(
            model,
            images,
            labels,
            rows,
            norm=norm,
            eps=eps,
            seed=seed,
            device=device,
            batch_size=batch_size,
            config=sanity,
            flags=flags,
        )
    curve = None
    if eps_grid:
        kw = dict(norm=norm, grid=eps_grid, seed=seed, device=device, batch_size=batch_size, progress=progress)
        curve = eps_curve(model, images, labels, rows, **kw)
    seconds = time.perf_counter() - t0
    return Evaluation(norm, eps, seed, batch_size, str(device), worst, list(flags), checks, seconds, curve)


def _square_after_white_box(worst: WorstCase) -> None:
    """AutoAttack's check that Square, run after the white-box attacks, broke (almost) nothing more. Attacking one
    component per call hides the cumulative accuracies from it, so it is called here with them."""
    from pyautoattack import checks

    n = len(worst.clean)
    accuracies = {"clean": worst.clean.mean() if n else 0.0}
    accuracies |= {a.name: a.robust_after / n for a in worst.attacks if n}
    checks.check_square_sr(accuracies, logger=logging.getLogger(AUTOATTACK_LOGGER))
