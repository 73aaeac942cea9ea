"""Synthetic data: class-balanced images from a conditional EDM denoiser, in DM-AT's npz format.

Image i has label i % label_dim and its initial noise from a generator seeded by the pair (seed, i), so it
does not depend on batch size, chunking or resume points. Images are made chunk by chunk through the writer it is
given (data/npz_writer.py): chunks an earlier call finished are skipped, and the writer's settings record makes a
call with other settings refuse them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.data.npz_writer import ChunkedNpzWriter
from dra_pipeline.errors import DraError
from dra_pipeline.seeding import keyed_normal
from dra_pipeline.teachers.sampler import RHO, SIGMA_MAX, SIGMA_MIN, heun_sample
from dra_pipeline.teachers.songunet import EDMDenoiser

PARTS_FORMAT = "dra-generate-parts/1"
CHUNK_SIZE = 1000  # images per resumable unit: 3 MB of uint8 at 32 x 32 x 3


def settings(denoiser: EDMDenoiser, *, count: int, seed: int, steps: int, chunk_size: int) -> dict:
    """What the images depend on, recorded beside the chunks so that a resumed call must match it."""
    cfg = denoiser.cfg
    return {
        "format": PARTS_FORMAT,
        "count": count,
        "seed": seed,
        "steps": steps,
        "chunk_size": chunk_size,
        "sigma_min": SIGMA_MIN,
        "sigma_max": SIGMA_MAX,
        "rho": RHO,
        "num_classes": cfg.label_dim,
        "image_shape": [cfg.img_resolution, cfg.img_resolution, cfg.img_channels],
        "denoiser_sha256": denoiser_sha256(denoiser),
    }


def check_denoiser(denoiser: EDMDenoiser) -> None:
    """generate needs a class-conditional denoiser in eval mode (dropout in train mode makes samples random)."""
    if not denoiser.cfg.label_dim:
        raise DraError("generate needs a class-conditional denoiser; this one has label_dim 0")
    if denoiser.training:
        raise ValueError("put the denoiser in eval mode: dropout in train mode makes samples random")


def generate(
    denoiser: EDMDenoiser,
    writer: ChunkedNpzWriter,
    *,
    seed: int,
    steps: int = 18,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the writer's `count` images (uint8 count x H x W x C) and labels chunk by chunk, then the npz file.

    The denoiser (eval mode, on the device to sample on) fixes H = W = img_resolution, C = img_channels and the
    classes (label_dim). steps: Heun steps N (2N - 1 denoiser calls per image). progress(n) is called with
    the number of images finished, skipped chunks included.
    """
    check_denoiser(denoiser)
    classes = denoiser.cfg.label_dim
    for start, stop in writer.chunks():
        if not writer.has(start):
            images = np.empty((stop - start, *writer.shape), np.uint8)
            for a in range(start, stop, batch_size):
                b = min(a + batch_size, stop)
                images[a - start : b - start] = sample_images(denoiser, np.arange(a, b), seed=seed, steps=steps)
                if progress:
                    progress(b - a)
            writer.write(start, images, class_labels(start, stop, classes))
        elif progress:
            progress(stop - start)
    return writer.finish(lambda start, stop: class_labels(start, stop, classes))


def class_labels(start: int, stop: int, num_classes: int) -> np.ndarray:
    """Labels of images start .. stop - 1: int64, image i has class i % num_classes."""
    return np.arange(start, stop, dtype=np.int64) % num_classes


@torch.no_grad()
def sample_images(denoiser: EDMDenoiser, indices: np.ndarray, *, seed: int, steps: int) -> np.ndarray:
    """Images number `indices` (n,) as uint8 (n, H, W, C): per-image noise n seeded by (seed, i), then Heun."""
    cfg = denoiser.cfg
    device = next(denoiser.parameters()).device
    noise, _ = keyed_normal((seed,), indices, (cfg.img_channels, cfg.img_resolution, cfg.img_resolution))
    labels = torch.as_tensor(indices % cfg.label_dim, device=device)
    one_hot = torch.nn.functional.one_hot(labels, cfg.label_dim).float()
    x = heun_sample(denoiser, noise.to(device), one_hot, num_steps=steps)  # (n, C, H, W)
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def denoiser_sha256(denoiser: EDMDenoiser) -> str:
    """Hash of the denoiser's config and state dict (names, dtypes, shapes, bytes): what its samples depend on."""
    h = hashlib.sha256(json.dumps(denoiser.cfg.to_dict(), sort_keys=True).encode())
    for name, value in denoiser.state_dict().items():
        value = value.detach().cpu().contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
