"""The checks a careful reviewer runs before believing a robust accuracy (Carlini et al. 2019, "On evaluating
adversarial robustness"; AutoAttack's own flags; docs/design.md).

Each check returns a `Check` with a one-line detail. A failed check does not make the number wrong, it makes it
untrustworthy: gradient masking (rounded inputs, saturated softmax outputs), randomness, batch-norm statistics
taken from the batch, or a defence that games the attack's budget. Every check is exercised against a model
broken on purpose in tests/test_sanity.py.

Accuracies here are fractions of the checked points that are correct on the clean image and under the attack.
A monotonicity check allows `tolerance` (a fraction) of slack: a sound model can lose or gain a point between two
runs whose random starts differ; a broken one moves by far more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.evaluation.attacks import AUTOATTACK_LOGGER, AUTOATTACK_STANDARD, autoattack_flags, build_attack
from dra_pipeline.evaluation.intervals import wilson
from dra_pipeline.evaluation.worst_case import Step, worst_case


@dataclass(frozen=True)
class SanityConfig:
    n: int = 256  # points checked: the first n of those evaluated
    eps_factors: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # eps grid, in units of the evaluation eps
    grid_steps: int = 20  # iterations at each grid eps (PGD with random start for L-inf, APGD-CE for L2)
    chance_eps: float = 0.5  # L-inf radius (pixels in [0, 1]) at which accuracy must fall to chance
    chance_steps: int = 50  # PGD iterations there, from the clean point, step 2.5 eps / steps
    few_steps: int = 10  # the shorter of the two runs compared by the more-steps check
    many_steps: int = 100  # the longer one; both use the step 2.5 eps / many_steps (L-inf)
    square_queries: int = 5000  # Square's budget (AutoAttack standard: 5000)
    batch_sizes: tuple[int, ...] = (1, 7, 128)  # logits must not depend on how points are batched
    tolerance: float = 0.01  # accuracy (fraction) a monotonicity check lets rise before it fails
    logit_rtol: float = 1e-4  # largest logit difference allowed, relative to max(1, max |logit|)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str  # one line: what was measured
    values: dict  # the numbers behind it

    def to_dict(self) -> dict:
        return asdict(self)


def run_sanity(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    *,
    norm: str,
    eps: float,
    seed: int,
    device: torch.device | str,
    batch_size: int,
    config: SanityConfig = SanityConfig(),
    flags: Sequence[str] = (),
) -> list[Check]:
    """All checks on the first `config.n` points of (x, y, rows). `flags`: AutoAttack warnings already seen
    (e.g. during the evaluation), reported by the autoattack-flags check with those raised here. A check whose
    attack or forward raises fails with the error as its detail (a model that cannot be attacked is not sound)."""
    ctx = _Context(model, x[: config.n], y[: config.n], rows[: config.n], norm, eps, seed, device, batch_size, config)
    checks = []
    with autoattack_flags() as raised:
        for name, check in (
            ("eps-grid", _eps_grid),
            ("chance-at-large-eps", _chance),
            ("more-steps", _more_steps),
            ("white-box-vs-square", _white_box_vs_square),
            ("repeatable", _determinism),
            ("autoattack-flags", _autoattack_checks),
        ):
            try:
                checks += check(ctx)
            except Exception as e:  # reported as the check's failure, with the error
                error = f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if name == "autoattack-flags":
                    raised.append(f"AutoAttack's checks {error}")
                else:
                    checks.append(Check(name, False, error, {}))
    found = list(dict.fromkeys([*flags, *raised]))
    checks.append(Check("autoattack-flags", not found, "; ".join(found) or "none raised", {"flags": found}))
    return checks


@dataclass(frozen=True)
class _Context:
    model: nn.Module
    x: Tensor
    y: Tensor
    rows: Tensor
    norm: str
    eps: float
    seed: int
    device: torch.device | str
    batch_size: int
    config: SanityConfig

    def attack(self, name: str, **kw):
        return build_attack(
            name, self.model, **{"norm": self.norm, "eps": self.eps, "seed": self.seed, "device": self.device, **kw}
        )

    def accuracy(self, *attacks) -> float:
        """Fraction correct on the clean image and under every attack given (none: clean accuracy)."""
        result = worst_case(
            self.model, self.x, self.y, self.rows, list(attacks), batch_size=self.batch_size, device=self.device
        )
        return float(result.robust.mean())


GRID_ATTACKS = {"Linf": "pgd", "L2": "apgd-ce"}  # the eps grid's attack per norm (PGD: uniform random start)


@dataclass(frozen=True)
class EpsGrid:
    """Accuracy against eps on one set of points, as fractions of n."""

    attack: str  # the attack run at every eps > 0, e.g. pgd-20
    eps: list[float]  # radii, pixels in [0, 1], ascending
    alone: list[float]  # correct on the clean image and under the attack at this eps
    robust: list[float]  # per point, the worst case over the attacks at every eps up to this one: non-increasing
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def eps_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    *,
    norm: str,
    grid: Sequence[float],
    seed: int,
    device: torch.device | str,
    batch_size: int,
    steps: int = SanityConfig.grid_steps,
    progress: Callable[[Step], None] | None = None,
) -> EpsGrid:
    """Accuracy of `model` (eval mode) on (x, y, rows) under GRID_ATTACKS[norm] with `steps` iterations at each eps
    of `grid` (pixels in [0, 1]; 0: the clean image only), every eps on the same points."""
    name, grid = GRID_ATTACKS[norm], sorted(float(e) for e in grid)
    flags = []
    for eps in grid:
        attack = [build_attack(name, model, norm=norm, eps=eps, seed=seed, device=device, steps=steps)] if eps else []
        result = worst_case(model, x, y, rows, attack, batch_size=batch_size, device=device, progress=progress)
        flags.append(result.robust)
    alone = np.stack(flags)  # (len(grid), N)
    worst = np.logical_and.accumulate(alone, axis=0)  # an example inside a smaller ball is inside every larger one
    return EpsGrid(f"{name}-{steps}", grid, alone.mean(1).tolist(), worst.mean(1).tolist(), alone.shape[1])


def _eps_grid(c: _Context) -> list[Check]:
    """Accuracy must not rise as eps grows (the attack at each eps alone: the worst case would hide a rise)."""
    grid = [f * c.eps for f in c.config.eps_factors]
    kw = dict(norm=c.norm, grid=grid, seed=c.seed, device=c.device, batch_size=c.batch_size, steps=c.config.grid_steps)
    curve = eps_curve(c.model, c.x, c.y, c.rows, **kw)
    accs = curve.alone
    rise = max((b - a for a, b in zip(accs, accs[1:])), default=0.0)
    return [
        Check(
            "eps-grid",
            rise <= c.config.tolerance,
            f"{curve.attack} accuracy " + ", ".join(f"{a:.3f}@{e:g}" for a, e in zip(accs, curve.eps)),
            {"eps": curve.eps, "accuracy": accs, "attack": GRID_ATTACKS[c.norm], "steps": c.config.grid_steps},
        )
    ]


def _chance(c: _Context) -> list[Check]:
    """An attack with a huge budget must reach chance: L-inf 0.5 reaches a mid-grey image from any image. From the
    clean point (no random start), so that a random start cannot do the work the gradients should."""
    cfg = c.config
    acc = c.accuracy(c.attack("pgd", norm="Linf", eps=cfg.chance_eps, steps=cfg.chance_steps, random_start=False))
    with torch.no_grad():
        chance = 1 / int(c.model(c.x[:128].to(c.device)).shape[1])
    lo, _ = wilson(round(acc * len(c.x)), len(c.x))
    detail = f"PGD-{cfg.chance_steps} L-inf eps {cfg.chance_eps}: accuracy {acc:.3f} (95 % CI from {lo:.3f})"
    return [
        Check(
            "chance-at-large-eps",
            lo <= chance,
            f"{detail}, chance {chance:.3f}",
            {"eps": cfg.chance_eps, "accuracy": acc, "ci95_low": lo, "chance": chance},
        )
    ]


def _more_steps(c: _Context) -> list[Check]:
    """The same attack run longer must not leave the model more accurate. L-inf: PGD from the clean point with one
    step size for both runs, so the longer run continues the shorter one's path."""
    cfg = c.config
    if c.norm == "Linf":
        step = 2.5 * c.eps / cfg.many_steps
        runs = [c.attack("pgd", steps=s, step=step, random_start=False) for s in (cfg.few_steps, cfg.many_steps)]
        what = f"PGD from the clean point, step {step:.4g}"
    else:
        runs = [c.attack("apgd-ce", steps=s) for s in (cfg.few_steps, cfg.many_steps)]
        what = "APGD-CE"
    a_few, a_many = (c.accuracy(r) for r in runs)
    return [
        Check(
            "more-steps",
            a_many <= a_few + cfg.tolerance,
            f"{what}: {cfg.few_steps} steps {a_few:.3f}, {cfg.many_steps} steps {a_many:.3f}",
            {"steps": [cfg.few_steps, cfg.many_steps], "accuracy": [a_few, a_many]},
        )
    ]


def _white_box_vs_square(c: _Context) -> list[Check]:
    """White-box (gradients) must be at least as strong as black-box (queries only), each on every point."""
    queries = c.config.square_queries
    a_white, a_square = c.accuracy(c.attack("apgd-ce")), c.accuracy(c.attack("square", n_queries=queries))
    return [
        Check(
            "white-box-vs-square",
            a_white <= a_square + c.config.tolerance,
            f"APGD-CE {a_white:.3f}, Square ({queries} queries) {a_square:.3f}",
            {"apgd-ce": a_white, "square": a_square, "square_queries": queries},
        )
    ]


def _logits(model: nn.Module, x: Tensor, batch_size: int, device) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[a : a + batch_size].to(device)).cpu() for a in range(0, len(x), batch_size)])


def _determinism(c: _Context) -> list[Check]:
    """Identical logits when the same batch is forwarded twice, and whatever the batch size."""
    model, x, device, config = c.model, c.x, c.device, c.config
    largest = max(config.batch_sizes)
    first, again = _logits(model, x, largest, device), _logits(model, x, largest, device)
    scale = max(1.0, float(first.abs().max()))
    repeat = float((first - again).abs().max())
    by_size, errors = {}, []
    for b in config.batch_sizes:
        try:
            by_size[b] = float((_logits(model, x, b, device) - first).abs().max())
        except (RuntimeError, ValueError) as e:  # e.g. BatchNorm1d in train mode refuses a batch of one
            by_size[b] = None
            errors.append(f"batch size {b} raised {type(e).__name__}: {str(e).splitlines()[0]}")
    worst = max((d for d in by_size.values() if d is not None), default=0.0)
    sizes = ", ".join(f"{b}: {d:.2g}" for b, d in by_size.items() if d is not None) + "".join(f"; {e}" for e in errors)
    return [
        Check(
            "repeatable",
            repeat <= config.logit_rtol * scale,
            f"max |logit difference| over two forwards {repeat:.3g} (max |logit| {scale:.3g})",
            {"max_abs_diff": repeat, "logit_scale": scale},
        ),
        Check(
            "batch-size-invariant",
            not errors and worst <= config.logit_rtol * scale,
            f"max |logit difference| from batch {largest}, by batch size: {sizes}",
            {"max_abs_diff": by_size, "logit_scale": scale},
        ),
    ]


def _autoattack_checks(c: _Context) -> list[Check]:
    """AutoAttack's own checks (pyautoattack.checks), logged to its logger (run_sanity reports what they raise):
    randomness, probability outputs, gradient calls in forward, enough classes for the targeted attacks, and
    points whose gradient is zero."""
    from pyautoattack import checks

    model, x, y, device = c.model, c.x, c.y, c.device

    logger = logging.getLogger(AUTOATTACK_LOGGER)
    xb, yb = x[:128].to(device), y[:128].to(device)
    checks.check_randomized(model, xb, yb, bs=len(xb), logger=logger)
    classes = checks.check_range_output(model, xb, logger=logger)
    checks.check_dynamic(model, xb, False, logger=logger)
    checks.check_n_classes(classes, list(AUTOATTACK_STANDARD), 9, 9, logger=logger)
    xg = xb.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), yb, reduction="sum"), xg)
    checks.check_zero_gradients(grad.contiguous(), logger=logger)  # its .view needs NCHW-contiguous memory
    return []
