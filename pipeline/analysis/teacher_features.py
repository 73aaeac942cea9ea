"""A teacher's pooled features of float images, differentiable in the images: what PGD through the teacher needs.

The teacher reads image i at its fixed noise level with the noise draw of row r_i (its (seed, row) generator, as
`extract` does), so features are a deterministic function of the image; every image is told class 0 (see
teachers/layer_probe.py for why a conditional teacher is not told the true label here).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

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
