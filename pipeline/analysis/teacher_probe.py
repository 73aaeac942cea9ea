"""A linear probe on frozen teacher features, clean and under PGD through the teacher with its noise fixed.

The teacher reads image i at its fixed noise level with the noise draw of row r_i (its (seed, row) generator,
as `extract` does), so attacking the probe is a deterministic function of the image: the attack cannot win by
re-rolling the noise. A class-conditional teacher is told class 0 for every image, as `teacher probe`'s default
"fixed" mode: told the true label it would write the label into its features (see teachers/layer_probe.py), and the
probe would read the label back whatever the image.

The probe is `linear_probe.fit_linear_probe` (the recipe of `teacher probe`), a module that PGD can
differentiate through.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from dra_pipeline.analysis.adversarial import PGD_STEPS, STEP_FACTOR
from dra_pipeline.analysis.numbers import pct
from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register
from dra_pipeline.analysis.teacher_features import batched_teacher_features, teacher_features
from dra_pipeline.linear_probe import LinearProbe, fit_linear_probe, linear_probe
from dra_pipeline.losses import uniform_start
from dra_pipeline.pgd import pgd_linf
from dra_pipeline.seeding import keyed_generator
from dra_pipeline.teachers import Teacher

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context


class _ProbedTeacher(nn.Module):
    """x -> probe(teacher_features(x, rows)) for one fixed batch of rows: what PGD attacks."""

    def __init__(self, teacher: Teacher, probe: LinearProbe, rows: np.ndarray):
        super().__init__()
        self.teacher, self.probe, self.rows = teacher, probe, rows

    def forward(self, x: Tensor) -> Tensor:
        return self.probe(teacher_features(self.teacher, x, self.rows)).float()


@dataclass(frozen=True)
class TeacherProbeResult:
    n_train: int
    n_test: int  # images whose clean probe accuracy is `clean`
    n_attack: int  # the first n_attack of them are attacked
    clean: float  # probe accuracy on n_test clean test images, in [0, 1]
    clean_attacked: float  # probe accuracy on the n_attack attacked images before the attack
    pgd: float  # probe accuracy on their PGD examples
    eps: float  # L-inf radius, pixels in [0, 1]
    steps: int
    teacher_labels: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def teacher_probe(
    teacher: Teacher,
    train: tuple[Tensor, Tensor, np.ndarray],
    test: tuple[Tensor, Tensor, np.ndarray],
    *,
    num_classes: int,
    eps: float,
    n_attack: int,
    steps: int = PGD_STEPS,
    seed: int = 0,
    batch_size: int = 64,
) -> TeacherProbeResult:
    """Fit on train = (x (N, C, H, W) in [0, 1], y (N,), rows (N,)), score on test (same form); attack the first
    n_attack test images with L-inf PGD (CE on the probe's logits) through the teacher."""
    probe = fit_linear_probe(batched_teacher_features(teacher, train[0], train[2]), train[1], num_classes=num_classes)
    x, y, rows = test
    z = batched_teacher_features(teacher, x, rows)
    correct = (probe(z).argmax(1) == y).numpy()
    n_attack = min(n_attack, len(x))
    on_device = copy.deepcopy(probe).to(teacher.device)
    robust = 0
    for a in range(0, n_attack, batch_size):
        b = min(a + batch_size, n_attack)
        model = _ProbedTeacher(teacher, on_device, rows[a:b])
        yb = y[a:b].to(teacher.device)
        g = keyed_generator(seed, a, device=teacher.device)
        x_adv = pgd_linf(
            model,
            x[a:b].to(teacher.device),
            lambda logits, yb=yb: F.cross_entropy(logits, yb),
            eps=eps,
            step=STEP_FACTOR * eps / max(steps, 1),
            steps=steps,
            random_start=uniform_start(eps, g),
        )
        with torch.no_grad():
            robust += int((model(x_adv).argmax(1) == yb).sum())
    return TeacherProbeResult(
        n_train=len(train[0]),
        n_test=len(x),
        n_attack=n_attack,
        clean=float(correct.mean()),
        clean_attacked=float(correct[:n_attack].mean()) if n_attack else float("nan"),
        pgd=robust / n_attack if n_attack else float("nan"),
        eps=eps,
        steps=steps,
        teacher_labels="class 0 for every image" if teacher.spec.label_dim else "unconditional",
    )


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(bars: dict[str, tuple[float, float]], n_attack: int, eps: float) -> Figure:
    """Grouped bars: clean and PGD accuracy (fractions) per model, on the same attacked images."""
    fig = Figure(figsize=(6, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    names = list(bars)
    x = np.arange(len(names))
    clean = [100 * bars[k][0] for k in names]
    robust = [100 * bars[k][1] for k in names]
    for offset, values, label, colour in ((-0.2, clean, "clean", "C0"), (0.2, robust, f"PGD eps={eps:g}", "C3")):
        rects = ax.bar(x + offset, values, 0.4, label=label, color=colour)
        ax.bar_label(rects, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Linear probe on frozen teacher features (n = {n_attack} attacked)")
    ax.legend(fontsize=8)
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    s, test, train = ctx.settings, ctx.test, ctx.train
    result = teacher_probe(ctx.teacher, (train.x, train.y, train.rows), (test.x, test.y, test.rows),
                           num_classes=ctx.num_classes, eps=ctx.eps, n_attack=s.probe_attack_n, steps=s.pgd_steps,
                           seed=s.seed)  # fmt: skip
    v = ctx.test_views()
    m = result.n_attack
    classifier = (float((v.logits[:m].argmax(1) == v.y[:m]).double().mean()),
                  float((v.adv_logits[:m].argmax(1) == v.y[:m]).double().mean()))  # fmt: skip
    bars = {"teacher + linear probe": (result.clean_attacked, result.pgd), "classifier": classifier}
    metrics = {**result.to_dict(), "classifier_on_attacked": {"clean": classifier[0], "pgd": classifier[1]}}
    notes = [
        f"the teacher reads each image at its fixed noise level with its row's noise; it is told "
        f"{result.teacher_labels}"
    ]
    if ctx.stored is not None and len(ctx.stored) >= 4:
        # The same probe on the stored features (the DRA targets): `extract` tells a conditional teacher each
        # image's true label, which it writes into its features (see teachers/layer_probe.py).
        z = ctx.stored_view("clean")
        half = len(z) // 2
        accuracy = linear_probe(z[:half], train.y[:half], z[half:], train.y[half:])
        metrics["stored_features_probe"] = {"accuracy": accuracy, "n_train": half, "n_test": len(z) - half}
        if ctx.teacher.spec.label_dim:
            notes.append(
                f"the stored features come from a class-conditional teacher told each image's true label "
                f"by `extract`; a probe on them scores {100 * accuracy:.1f} % (training rows, half/half), "
                "so accuracy near 100 % means the DRA targets carry the label itself"
            )
    return metrics, figure(bars, n_attack=m, eps=ctx.eps), notes


def markdown(m: dict) -> list[str]:
    c = m["classifier_on_attacked"]
    return [
        f"Logistic regression on the teacher's pooled features of {m['n_train']} training images (L-BFGS, as "
        f"`teacher probe`); L-inf PGD-{m['steps']} at eps {m['eps']:g} through the teacher and the probe.",
        "",
        "| model | clean (all n_test) | clean (attacked) | PGD (attacked) |",
        "|---|---:|---:|---:|",
        f"| teacher + linear probe | {pct(m['clean'])} (n = {m['n_test']}) | {pct(m['clean_attacked'])} | "
        f"{pct(m['pgd'])} (n = {m['n_attack']}) |",
        f"| classifier | - | {pct(c['clean'])} | {pct(c['pgd'])} |",
    ] + _stored_probe(m.get("stored_features_probe"))


def _stored_probe(s: dict | None) -> list[str]:
    if not s:
        return []
    return [
        "",
        f"The same probe on the stored features of the training rows (the DRA targets, fitted on {s['n_train']}, "
        f"scored on the other {s['n_test']}): {pct(s['accuracy'])}.",
    ]


register(
    AnalysisSpec(
        "teacher-probe", "Linear probe on teacher features", "teacher_probe.png", run, markdown, needs_teacher=True
    )
)
