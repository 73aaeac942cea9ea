"""What gets evaluated: the checkpoint (a run's best EMA weights by default) and the points (the first n images of
a split, in dataset order, as RobustBench takes its first n; no sampling, so n points are always the same ones).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checkpoints import newest_run
from ..errors import DraError


def resolve_checkpoint(*, run: Path | None, checkpoint: Path | None, runs_root: Path = Path("runs")) -> Path:
    """--checkpoint FILE as given; --run DIR -> DIR/best-ema.pt; neither -> the newest run's best-ema.pt."""
    if run is not None and checkpoint is not None:
        raise DraError("pass --run or --checkpoint, not both")
    if checkpoint is not None:
        return Path(checkpoint)
    run = Path(run) if run is not None else newest_run(runs_root)
    if not run.is_dir():
        raise DraError(f"run directory {run} not found")
    path = run / "best-ema.pt"
    if not path.is_file():
        raise DraError(f"{run}: no best-ema.pt (not a run directory, or training has not saved a checkpoint yet)")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Points:
    images: Tensor  # (N, C, H, W) float32 in [0, 1], on the CPU
    labels: Tensor  # (N,) int64
    rows: Tensor  # (N,) int64: dataset rows (0..N-1, the first N)
    description: dict  # source, split, total, n, selection, fingerprint


def load_points(dataset: str, split: str, n: int | None, *, data_dir: str | os.PathLike | None = None,
                image_size: tuple[int, int] | None = None, channels: int | None = None) -> Points:  # fmt: skip
    """The first n images (all when n is None) of `dataset`'s `split`, checked against the model's input shape."""
    from ..data import open_source

    source = open_source(f"{dataset}:{split}", data_dir=data_dir)
    total = len(source)
    n = total if n is None else n
    if n < 1:
        raise DraError(f"--n must be at least 1 (got {n})")
    if n > total:
        raise DraError(f"--n {n} exceeds the {total} images of {source.name}")
    h, w, c = source.image_shape
    if (image_size is not None and tuple(image_size) != (h, w)) or (channels is not None and channels != c):
        raise DraError(f"{source.name} images are {h}x{w}x{c} but the model takes "
                       f"{'x'.join(map(str, image_size or ('?', '?')))}x{channels}")  # fmt: skip
    rows = np.arange(n, dtype=np.int64)
    images = torch.from_numpy(np.ascontiguousarray(source.read(rows))).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(np.asarray(source.labels[rows], dtype=np.int64))
    description = {"source": source.name, "split": split, "path": source.spec.path, "total": total, "n": n,
                   "selection": f"first {n} of {total}", "fingerprint": source.fingerprint()}  # fmt: skip
    return Points(images.contiguous(), labels, torch.from_numpy(rows), description)
