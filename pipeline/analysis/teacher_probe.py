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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.analysis.adversarial import PGD_STEPS, STEP_FACTOR
from dra_pipeline.linear_probe import LinearProbe, fit_linear_probe
from dra_pipeline.losses import uniform_start
from dra_pipeline.pgd import pgd_linf
from dra_pipeline.seeding import keyed_generator
from dra_pipeline.teachers import Teacher
from dra_pipeline.teachers.base import resize_center_crop


def teacher_features(teacher: Teacher, x: Tensor, rows: np.ndarray) -> Tensor:
    """Pooled features (N, dim) of images x (N, C, H, W) in [0, 1] at the teacher's layer and fixed noise level,
    row r_i's noise, every image told class 0; differentiable in x. Equals `teacher(uint8 images, 0, rows)`."""
    spec = teacher.spec
    if x.shape[1] != spec.channels:
        raise ValueError(f"{spec.name} expects {spec.channels}-channel images, got {x.shape[1]}")
    x = x.to(teacher.device).float()
    if x.shape[-2:] != (spec.resolution, spec.resolution):
        x = resize_center_crop(x, spec.resolution)
    lo, hi = spec.in_range
    xm = teacher.encode(x * (hi - lo) + lo)
    eps, _ = teacher.row_noise(np.asarray(rows, dtype=np.int64), tuple(xm.shape[1:]))
    sigma = torch.full((len(xm),), teacher.default_sigma(), device=xm.device)
    x_noisy, level = teacher.add_noise(xm, eps.to(xm.device), sigma)
    labels = torch.zeros(len(xm), dtype=torch.long, device=xm.device)
    return teacher.pool(teacher.capture(x_noisy, level, labels))


def batched_teacher_features(teacher: Teacher, x: Tensor, rows: np.ndarray, *, batch_size: int = 128) -> Tensor:
    """teacher_features without gradients, in batches: (N, dim) float32 on the CPU."""
    with torch.no_grad():
        return torch.cat(
            [
                teacher_features(teacher, x[a : a + batch_size], rows[a : a + batch_size]).float().cpu()
                for a in range(0, len(x), batch_size)
            ]
        )


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
