"""The image-source contract: uint8 HWC images and integer labels addressed by index.

Every source is opened from a `SourceSpec` (kind, path, split, options), validates its files on open, and has a
content fingerprint over every byte of every image, so a feature store can record its sources and refuse data that
changed underneath it (docs/performance.md: 60,000 Fashion-MNIST images and 1,000,000 CIFAR-size rows).
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dra_pipeline.errors import DataError

FINGERPRINT_BLOCK_BYTES = 64 << 20  # images read per step of the streaming fingerprint


@dataclass(frozen=True)
class SourceSpec:
    """How to reopen a source: enough to rebuild it from a store's provenance."""

    kind: str  # registry name: fashion-mnist, cifar10, cifar100, npz, hdf5, folder
    path: str  # file or directory (absolute once resolved)
    split: str = "train"  # train | test (named datasets); "all" for single-file sources
    options: dict = field(default_factory=dict)  # kind-specific, e.g. HDF5 dataset names

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "split": self.split, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> SourceSpec:
        return cls(kind=d["kind"], path=d["path"], split=d.get("split", "train"), options=dict(d.get("options", {})))


class ImageSource(ABC):
    """Images (uint8, N x H x W x C) and labels (int64, N) addressed by index 0..N-1."""

    spec: SourceSpec
    labels: np.ndarray  # (N,) int64, validated to lie in [0, num_classes)
    num_classes: int
    class_names: list[str] | None = None

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""

    @abstractmethod
    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images at `indices` (any order, repeats allowed) as uint8 (len(indices), H, W, C)."""

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Images start..stop-1 as uint8 (stop - start, H, W, C); sources kept in row order return a view."""
        return self.read(np.arange(start, stop))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def name(self) -> str:
        return f"{self.spec.kind}:{self.spec.split}" if self.spec.kind in NAMED_KINDS else Path(self.spec.path).name

    def fingerprint(self) -> str:
        """sha256 (hex, 16 chars) of count, image shape, classes, all labels and every byte of every image, read
        in blocks of about 64 MiB (computed once per opened source)."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = self._fingerprint_header()
        n = len(self)
        block = max(1, FINGERPRINT_BLOCK_BYTES // max(1, int(np.prod(self.image_shape))))
        for start in range(0, n, block):
            h.update(np.ascontiguousarray(self.read_range(start, min(start + block, n))))
        return h.hexdigest()[:16]

    def _fingerprint_header(self):
        """A sha256 object fed with count, image shape, classes and labels (the part every fingerprint shares)."""
        h = hashlib.sha256()
        h.update(f"{len(self)}|{tuple(self.image_shape)}|{self.num_classes}".encode())
        h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        return h

    def describe(self) -> dict:
        """Spec plus count, shape, classes and fingerprint: what a store records about this source."""
        return {
            **self.spec.to_dict(),
            "count": len(self),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "fingerprint": self.fingerprint(),
        }


NAMED_KINDS = ("fashion-mnist", "cifar10", "cifar100")


def declared_classes(spec: SourceSpec) -> int | None:
    """The `num_classes` option of a source (None when absent), a whole number of at least 1."""
    text = spec.options.get("num_classes")
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise DataError(f"{spec.path}: option num_classes must be a whole number of at least 1, not {text!r}")
    return value


def check_images_and_labels(
    where: str, images_shape: tuple, images_dtype: np.dtype, labels: np.ndarray, num_classes: int | None
) -> tuple[np.ndarray, int]:
    """Validate an image array's shape/dtype against its labels; return (int64 labels, num_classes).

    Raises DataError with one line naming `where` for: non-uint8 images, rank other than 4 (N, H, W, C),
    image/label count mismatch, non-integer labels, labels outside [0, num_classes).
    """
    if np.dtype(images_dtype) != np.uint8:
        raise DataError(f"{where}: images must be uint8 in [0, 255], found {np.dtype(images_dtype)}")
    if len(images_shape) != 4:
        raise DataError(f"{where}: images must have rank 4 (N, H, W, C), found shape {tuple(images_shape)}")
    if images_shape[3] not in (1, 3):
        raise DataError(f"{where}: images must be N x H x W x C with C in (1, 3), found shape {tuple(images_shape)}")
    return check_labels(where, labels, count=images_shape[0], num_classes=num_classes)


def check_labels(where: str, labels: np.ndarray, *, count: int, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Labels as int64 (count,), checked against [0, num_classes); num_classes inferred as max+1 when None."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, found shape {labels.shape}")
    if labels.shape[0] != count:
        raise DataError(f"{where}: {count} images but {labels.shape[0]} labels")
    integral = np.issubdtype(labels.dtype, np.integer)
    if not integral and not (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)):
        raise DataError(f"{where}: labels must be integers, found {labels.dtype}")
    labels = labels.astype(np.int64)
    if count == 0:
        raise DataError(f"{where}: no images")
    lo, hi = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = hi + 1
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{where}: labels must lie in [0, {num_classes}), found range [{lo}, {hi}]")
    return labels, num_classes
