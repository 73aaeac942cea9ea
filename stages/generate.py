"""Synthetic data: class-balanced images from a conditional EDM denoiser, written in DM-AT's npz format.

Image i has label i % label_dim and its initial noise from a generator seeded by the pair (seed, i), so it
does not depend on batch size, chunking or resume points. Images are made in chunks of `chunk_size`, each written
whole (temp file + rename) to `.NAME.npz.parts/chunk-KKKKKK.npz` beside the output; rerunning the same call
skips the finished chunks, and `settings.json` there makes a call with other settings refuse them. When every
chunk exists they are streamed into NAME.npz, members stored uncompressed so that the npz source memory-maps
`image.npy`, and the parts are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.errors import DraError
from dra_pipeline.seeding import keyed_normal
from dra_pipeline.teachers.sampler import RHO, SIGMA_MAX, SIGMA_MIN, heun_sample
from dra_pipeline.teachers.songunet import EDMDenoiser

PARTS_FORMAT = "dra-generate-parts/1"
CHUNK_SIZE = 1000  # images per resumable unit: 3 MB of uint8 at 32 x 32 x 3


def generate(
    denoiser: EDMDenoiser,
    out: Path,
    *,
    count: int,
    seed: int,
    steps: int = 18,
    batch_size: int = 100,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write `count` images (uint8 count x H x W x C) and labels (int64 count) to the npz `out`; rerun to resume.

    The denoiser (eval mode, on the device to sample on) fixes H = W = img_resolution, C = img_channels and the
    classes (label_dim). steps: Heun steps N (2N - 1 denoiser calls per image). progress(n) is called with
    the number of images finished, skipped chunks included.
    """
    if out.exists():
        raise DraError(f"{out} already exists; choose another --out or delete it")
    cfg = denoiser.cfg
    if not cfg.label_dim:
        raise DraError("generate needs a class-conditional denoiser; this one has label_dim 0")
    if denoiser.training:
        raise ValueError("put the denoiser in eval mode: dropout in train mode makes samples random")
    if seed < 0 or count < 1:
        raise ValueError(f"need seed >= 0 and count >= 1, got seed={seed}, count={count}")
    shape = (cfg.img_resolution, cfg.img_resolution, cfg.img_channels)
    parts = out.with_name(f".{out.name}.parts")
    _claim(
        parts,
        {
            "format": PARTS_FORMAT,
            "count": count,
            "seed": seed,
            "steps": steps,
            "chunk_size": chunk_size,
            "sigma_min": SIGMA_MIN,
            "sigma_max": SIGMA_MAX,
            "rho": RHO,
            "num_classes": cfg.label_dim,
            "image_shape": list(shape),
            "denoiser_sha256": denoiser_sha256(denoiser),
        },
    )

    chunks = []
    for start in range(0, count, chunk_size):
        stop = min(start + chunk_size, count)
        path = parts / f"chunk-{start // chunk_size:06d}.npz"
        chunks.append((path, start, stop))
        if path.is_file():
            if progress:
                progress(stop - start)
            continue
        images = np.empty((stop - start, *shape), np.uint8)
        for a in range(start, stop, batch_size):
            b = min(a + batch_size, stop)
            images[a - start : b - start] = sample_images(denoiser, np.arange(a, b), seed=seed, steps=steps)
            if progress:
                progress(b - a)
        _save_atomic(path, image=images, label=class_labels(start, stop, cfg.label_dim))

    _assemble(chunks, out, parts / "assembled.npz.partial", shape=shape, num_classes=cfg.label_dim)
    for path, _, _ in chunks:
        path.unlink()
    (parts / "settings.json").unlink()
    for stray in parts.glob("*.partial"):  # temp files of interrupted chunk writes
        stray.unlink()
    with contextlib.suppress(OSError):  # a folder still holding files this function did not write stays
        parts.rmdir()
    return out


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


def _claim(parts: Path, settings: dict) -> None:
    """Create the parts folder with its settings record, or check that an existing one was made with these."""
    record = parts / "settings.json"
    if record.is_file():
        old = json.loads(record.read_text())
        diff = [
            f"{k} was {old.get(k)!r}, now {settings.get(k)!r}"
            for k in settings.keys() | old.keys()
            if old.get(k) != settings.get(k)
        ]
        if diff:
            raise DraError(
                f"{parts} holds chunks made with other settings ({'; '.join(sorted(diff))}); "
                "rerun with those settings or delete that folder"
            )
        return
    if any(parts.glob("chunk-*.npz")):
        raise DraError(f"{parts} holds chunks but no settings.json; delete that folder to start again")
    parts.mkdir(exist_ok=True)
    tmp = record.with_name(record.name + ".partial")
    tmp.write_text(json.dumps(settings, indent=1))
    tmp.replace(record)


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    """np.savez to a temp name, flushed to disk, then renamed: a file at `path` is always complete."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _assemble(
    chunks: list[tuple[Path, int, int]], out: Path, tmp: Path, *, shape: tuple[int, int, int], num_classes: int
) -> None:
    """Stream the chunks into `out` (stored zip members image.npy, label.npy), one chunk in RAM at a time."""
    count = chunks[-1][2]
    with open(tmp, "wb") as raw:
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
            with zf.open("image.npy", "w", force_zip64=True) as f:
                _write_npy_header(f, np.uint8, (count, *shape))
                for path, start, stop in chunks:
                    with np.load(path) as z:
                        images, labels = z["image"], z["label"]
                    if images.shape != (stop - start, *shape) or images.dtype != np.uint8:
                        raise DraError(
                            f"{path}: images {images.dtype} {images.shape}, expected uint8 "
                            f"{(stop - start, *shape)}; delete it and rerun"
                        )
                    if not np.array_equal(labels, class_labels(start, stop, num_classes)):
                        raise DraError(f"{path}: labels are not the class-balanced ones; delete it and rerun")
                    f.write(np.ascontiguousarray(images).data)
            with zf.open("label.npy", "w", force_zip64=True) as f:
                _write_npy_header(f, np.int64, (count,))
                for _, start, stop in chunks:
                    f.write(class_labels(start, stop, num_classes).data)
        raw.flush()
        os.fsync(raw.fileno())
    tmp.replace(out)


def _write_npy_header(f, dtype, shape: tuple[int, ...]) -> None:
    """The .npy header of a C-ordered array; the array bytes follow it."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
