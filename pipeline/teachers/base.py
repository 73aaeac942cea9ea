"""The teacher contract: frozen diffusion model in, pooled features per row out.

    teacher(images, labels, rows, views=("clean",)) -> (N, len(views), dim)

images are uint8 (N, H, W, C) as image sources yield them; each row's noise comes from a generator seeded by
(seed, row), so a row's features never depend on the batch it was computed in. The forward pass stops at the
feature layer (a hook captures its output and ends the pass), so later layers cost nothing.

Views (all at the row's fixed noise):
  clean        the image at the teacher's noise level
  flip         the horizontally flipped noisy image (for training on flipped crops)
  extra-sigma  one more noise level per row, ln(sigma) ~ N(-1.2, 1.2^2) (EDM's training distribution)
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.seeding import keyed_normal

TeacherLabels = Literal["true", "fixed"]  # what a conditional teacher is told: each image's label, or class 0
TEACHER_LABELS = ("true", "fixed")


def told_labels(labels: np.ndarray, teacher_labels: str) -> np.ndarray:
    """The labels a class-conditional teacher is given: `labels` ("true") or class 0 for every image ("fixed")."""
    if teacher_labels not in TEACHER_LABELS:
        raise DraError(f"teacher labels must be true or fixed, got {teacher_labels!r}")
    return labels if teacher_labels == "true" else np.zeros_like(labels)


VIEWS = ("clean", "flip", "extra-sigma")
EXTRA_SIGMA_LOG_MEAN, EXTRA_SIGMA_LOG_STD = -1.2, 1.2  # EDM's P_mean, P_std


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    family: str  # edm | ddpm | dit | lightningdit | tiny
    dataset: str  # source text of the real training set the teacher implies (e.g. "cifar10")
    resolution: int  # side length the network expects, pixels
    channels: int  # image channels it expects
    in_range: tuple[float, float]  # pixel range it was trained on
    label_dim: int  # classes for a conditional model, 0 for unconditional
    layer: str  # default module whose output is pooled
    noise: float  # default noise level: sigma (noise_kind "sigma") or DDPM timestep (noise_kind "t")
    noise_kind: Literal["sigma", "t"]
    dim: int  # pooled feature width at the default layer
    checkpoint: str  # default weights: a path, a URL fetched into $DRA_HOME/checkpoints or a Hugging Face repo id
    # ("" when the package ships the weights or none are needed)
    description: str


class _Stop(Exception):
    """Raised by the feature hook to end the forward pass once the feature layer has run."""


class Teacher(nn.Module):
    """A frozen diffusion model read at one layer and one noise level. Subclasses define the model parts."""

    def __init__(self, spec: TeacherSpec, *, layer: str | None, noise: float | None, seed: int):
        super().__init__()
        self.spec = spec
        self.layer = layer or spec.layer
        self.noise = float(spec.noise if noise is None else noise)
        self.seed = int(seed)
        self.zero_channels: tuple[int, ...] = ()
        self.checkpoint_sha256 = ""
        self.checkpoint_path = ""  # as given to create_teacher, else the spec's default ("" for packaged/random)
        self._captured: Tensor | None = None

    # ---- what a family provides -----------------------------------------------------------------------------
    @abstractmethod
    def feature_modules(self) -> dict[str, nn.Module]:
        """Named modules whose outputs can serve as features (the `--layer` choices)."""

    @abstractmethod
    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        """Forward pass of the denoiser on model-space input at noise level (N,), far enough to hit the layer."""

    def encode(self, x: Tensor) -> Tensor:
        """Images in the teacher's pixel range (N, C, R, R) -> model space (identity; latent models encode)."""
        return x

    def add_noise(self, x: Tensor, eps: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Noisy input and the level the network is told, for noise std `sigma` (N,) in model units."""
        return x + sigma.view(-1, *[1] * (x.dim() - 1)) * eps, sigma

    def register_feature_hook(self, layer: str, module: nn.Module, hook) -> torch.utils.hooks.RemovableHandle:
        """Attach hook(module, inputs, output) to where `layer` is read: by default the module's output."""
        return module.register_forward_hook(hook)

    def default_sigma(self) -> float:
        """The teacher's fixed noise level as a noise std (EDM sigma; timestep teachers convert)."""
        return self.noise

    # ---- the contract ---------------------------------------------------------------------------------------
    def provenance(self, views: Sequence[str]) -> dict:
        return {
            "teacher": self.spec.name,
            "family": self.spec.family,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint": self.checkpoint_path,
            "layer": self.layer,
            "noise_kind": self.spec.noise_kind,
            "noise": self.noise,
            "extra_sigma": f"ln sigma ~ N({EXTRA_SIGMA_LOG_MEAN}, {EXTRA_SIGMA_LOG_STD}^2)"
            if "extra-sigma" in views
            else None,
            "pooling": "mean",
            "zeroed_channels": list(self.zero_channels),
            "seed": self.seed,
            "resolution": self.spec.resolution,
            "in_range": list(self.spec.in_range),
        }

    def set_zero_channels(self, channels: Sequence[int]) -> None:
        self.zero_channels = tuple(sorted(int(c) for c in channels))

    @torch.no_grad()
    def forward(self, images, labels, rows, views: Sequence[str] = ("clean",)) -> Tensor:
        """images uint8 (N, H, W, C), labels (N,), rows (N,) -> float32 features (N, len(views), dim)."""
        activations = self.layer_activations(images, labels, rows, views)
        return torch.stack([self.pool(a) for a in activations], dim=1)

    @torch.no_grad()
    def layer_activations(self, images, labels, rows, views: Sequence[str] = ("clean",)) -> list[Tensor]:
        """Un-pooled feature-layer outputs, one tensor per view, zeroed channels applied."""
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise DraError(f"unknown view(s) {unknown}; choose from {', '.join(VIEWS)}")
        x, labels, eps, log_sigma_noise = self.prepare(images, labels, rows)
        fixed = torch.full((len(x),), self.default_sigma(), device=x.device)
        outputs = []
        for view in views:
            sigma = fixed
            if view == "extra-sigma":
                sigma = torch.exp(EXTRA_SIGMA_LOG_MEAN + EXTRA_SIGMA_LOG_STD * log_sigma_noise)
            x_noisy, level = self.add_noise(x, eps, sigma)
            if view == "flip":
                x_noisy = x_noisy.flip(-1)
            outputs.append(self.capture(x_noisy, level, labels))
        return outputs

    def prepare(self, images, labels, rows) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Model-space inputs (N, ...), labels (N,) long, each row's noise like the input, and one more normal (N,)."""
        device = self.device
        x = self.encode(self.preprocess(images).to(device))
        labels = torch.as_tensor(np.ascontiguousarray(labels), dtype=torch.long, device=device)
        eps, extra = self.row_noise(np.asarray(rows, dtype=np.int64), tuple(x.shape[1:]))
        return x, labels, eps.to(device), extra.to(device)

    def row_noise(self, rows: np.ndarray, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Per-row standard normal noise (N, *shape) and one more normal (N,), from generators seeded (seed, row)."""
        eps, extra = keyed_normal((self.seed,), rows, shape, extra=1)
        return eps, extra[:, 0]

    def preprocess(self, images) -> Tensor:
        """uint8 (N, H, W, C) -> float (N, C, R, R) in the teacher's pixel range."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        if x.shape[1] != self.spec.channels:
            raise DraError(f"{self.spec.name} expects {self.spec.channels}-channel images, got {x.shape[1]} channels")
        r = self.spec.resolution
        if x.shape[-2:] != (r, r):
            x = resize_center_crop(x, r)
        lo, hi = self.spec.in_range
        return x * (hi - lo) + lo

    def capture(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> Tensor:
        """Run to the feature layer and return its output with the zeroed channels set to 0."""
        modules = self.feature_modules()
        if self.layer not in modules:
            raise DraError(f"{self.spec.name} has no layer {self.layer!r}; choose from {', '.join(modules)}")

        def hook(_module, _inputs, output):
            self._captured = output[0] if isinstance(output, tuple) else output
            raise _Stop

        handle = self.register_feature_hook(self.layer, modules[self.layer], hook)
        try:
            self.run(x_noisy, level, labels)
        except _Stop:
            pass
        finally:
            handle.remove()
        if self._captured is None:
            raise RuntimeError(f"layer {self.layer} did not run")
        out, self._captured = self._captured.float(), None
        if self.zero_channels:
            channel_dim = 1 if out.dim() == 4 else -1
            out = out.index_fill(channel_dim, torch.tensor(self.zero_channels, device=out.device), 0.0)
        return out

    @staticmethod
    def pool(activation: Tensor) -> Tensor:
        """Average over space (N, C, H, W) or tokens (N, T, C) -> (N, C)."""
        return activation.mean(dim=(2, 3)) if activation.dim() == 4 else activation.mean(dim=1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def one_hot(self, labels: Tensor) -> Tensor | None:
        return F.one_hot(labels, self.spec.label_dim).float() if self.spec.label_dim else None


def resize_center_crop(x: Tensor, size: int) -> Tensor:
    """Resize the short side to `size` (bicubic, antialiased) and center-crop: (N, C, H, W) -> (N, C, size, size)."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, math.floor(h * scale + 0.5)), max(size, math.floor(w * scale + 0.5))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]
