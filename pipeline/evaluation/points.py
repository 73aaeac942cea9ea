"""The points an evaluation attacks: the first n images of a split, in dataset order, as RobustBench takes its first
n (no sampling, so n points are always the same ones), a fixed random selection for class-ordered folders, or the
images a subset file lists; RobustBench's preprocessings for image folders of another size than the model's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import torch
from torch import Tensor

from dra_pipeline.errors import DraError
from dra_pipeline.hashing import file_sha256

SELECTION_SEED = 0  # a random selection is the same for every model and attack seed
# RobustBench's ImageNet preprocessings, as image-folder options (see pipeline/data/folder.py)
PREPROCESSINGS = {
    "Res256Crop224": {"resize": "256", "crop": "224", "interpolation": "bilinear"},
    "Crop288": {"crop": "288"},
    "none": {},
}
IMAGENET_SIZE = (224, 224)  # the input of RobustBench's ImageNet models: Res256Crop224 is their preprocessing


@dataclass(frozen=True)
class Points:
    images: Tensor  # (N, C, H, W) float32 in [0, 1], on the CPU
    labels: Tensor  # (N,) int64
    rows: Tensor  # (N,) int64: rows of the source
    description: dict  # source, split, path, total, n, selection, preprocessing, fingerprint


def points_source(
    dataset: str,
    split: str,
    data: str | None,
    preprocessing: str | None,
    *,
    image_size: tuple[int, int] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> tuple[str, str]:
    """(source text, preprocessing name) of what to evaluate on: `data` when given (any source: a folder such as
    ImageNet's val, an .npz, an .h5, or NAME:SPLIT), else the model's named dataset at `split`. Preprocessing
    applies to image folders only; by default none for a folder whose images already have the model's
    `image_size` (e.g. 32 px CIFAR JPEGs) or whose text names its own size/resize/crop, RobustBench's
    Res256Crop224 for an ImageNet-size (224 px) model or one that records no size, none otherwise (the size check
    then names the mismatch)."""
    from dra_pipeline.data import NAMED, open_source

    if data is None:
        if dataset not in NAMED:
            raise DraError(
                f"the model was trained on {dataset}, not a named dataset; pass --data with the evaluation images "
                "(e.g. its test or val folder)"
            )
        text = f"{dataset}:{split}"
    else:
        text = data
    is_folder = Path(text.partition("?")[0].removeprefix("folder:")).is_dir()
    if preprocessing is None:
        preprocessing = "none"
        if is_folder and not _resizes(text):
            native = None if image_size is None else open_source(text, data_dir=data_dir).image_shape[:2]
            at_size = native is not None and tuple(native) == tuple(image_size)  # the first image's size
            if not at_size and (image_size is None or tuple(image_size) == IMAGENET_SIZE):
                preprocessing = "Res256Crop224"
    if preprocessing not in PREPROCESSINGS:
        raise DraError(f"unknown preprocessing {preprocessing!r} (choose {', '.join(PREPROCESSINGS)})")
    if PREPROCESSINGS[preprocessing]:
        if not is_folder:
            raise DraError(f"--preprocessing {preprocessing} resizes image folders; {text} is not one")
        text += ("&" if "?" in text else "?") + "&".join(f"{k}={v}" for k, v in PREPROCESSINGS[preprocessing].items())
    return text, preprocessing


def _resizes(text: str) -> bool:
    """Whether source text already names a resize or crop option (the folder's own geometry)."""
    return any(key in ("size", "resize", "crop") for key in parse_qs(text.partition("?")[2]))


def select_rows(
    total: int, n: int | None, selection: str, subset: Path | None, files: list[str] | None
) -> tuple[np.ndarray, str]:
    """Rows to evaluate and how they were chosen. `subset`: a text file, one source row (integer) or folder-relative
    path (e.g. RobustBench's list of ImageNet val images) per line; its first n lines when n is given. Otherwise
    `selection` first (RobustBench's first n of a test split) or random (n rows drawn without replacement with
    SELECTION_SEED, sorted: a class-ordered folder needs it)."""
    if n is not None and n < 1:
        raise DraError(f"--n must be at least 1 (got {n})")
    if subset is not None:
        rows = _subset_rows(Path(subset), total, files)
        if n is not None:
            if n > len(rows):
                raise DraError(f"--n {n} exceeds the {len(rows)} entries of {subset}")
            rows = rows[:n]
        return rows, f"{len(rows)} listed in {Path(subset).name} (sha256 {file_sha256(Path(subset))[:12]}) of {total}"
    n = total if n is None else n
    if n > total:
        raise DraError(f"--n {n} exceeds the {total} images of the source")
    if selection == "first":
        return np.arange(n, dtype=np.int64), f"first {n} of {total}"
    if selection == "random":
        rows = np.sort(np.random.default_rng(SELECTION_SEED).permutation(total)[:n]).astype(np.int64)
        return rows, f"random {n} of {total} (seed {SELECTION_SEED})"
    raise DraError(f"unknown selection {selection!r} (choose first or random)")


def _subset_rows(path: Path, total: int, files: list[str] | None) -> np.ndarray:
    if not path.is_file():
        raise DraError(f"subset file {path} not found")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DraError(f"{path}: no entries")
    index = {name: i for i, name in enumerate(files)} if files is not None else {}
    rows = []
    for number, line in enumerate(lines, 1):
        if line.isdigit():
            row = int(line)
        elif line in index:
            row = index[line]
        else:
            what = "not in the folder's index" if files is not None else "not a row number (the source is no folder)"
            raise DraError(f"{path}:{number}: {line!r} {what}")
        if row >= total:
            raise DraError(f"{path}:{number}: row {row} beyond the {total} images of the source")
        rows.append(row)
    if len(set(rows)) != len(rows):
        raise DraError(f"{path}: lists some images twice")
    return np.asarray(rows, dtype=np.int64)


def load_points(
    dataset: str,
    split: str,
    n: int | None,
    *,
    data: str | None = None,
    preprocessing: str | None = None,
    selection: str | None = None,
    subset: Path | None = None,
    data_dir: str | os.PathLike | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> Points:
    """n images of the evaluation source (see points_source and select_rows; selection defaults to first for a
    named dataset, random otherwise), checked against the model's input shape."""
    from dra_pipeline.data import NAMED, open_source

    text, preprocessing = points_source(dataset, split, data, preprocessing, image_size=image_size, data_dir=data_dir)
    source = open_source(text, data_dir=data_dir)
    total = len(source)
    selection = selection or ("first" if source.spec.kind in NAMED else "random")
    rows, chosen = select_rows(total, n, selection, subset, getattr(source, "files", None))
    h, w, c = source.image_shape
    if (image_size is not None and tuple(image_size) != (h, w)) or (channels is not None and channels != c):
        hint = " (set --preprocessing)" if source.spec.kind == "folder" else ""
        raise DraError(
            f"{source.name} images are {h}x{w}x{c} but the model takes "
            f"{'x'.join(map(str, image_size or ('?', '?')))}x{channels}{hint}"
        )
    images = torch.from_numpy(np.ascontiguousarray(source.read(rows))).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(np.asarray(source.labels[rows], dtype=np.int64))
    split_name = source.spec.split if data is not None else split
    description = {
        "source": source.name,
        "split": split_name,
        "path": source.spec.path,
        "total": total,
        "n": len(rows),
        "selection": chosen,
        "preprocessing": preprocessing,
        "fingerprint": source.fingerprint(),
    }
    return Points(images.contiguous(), labels, torch.from_numpy(rows), description)
