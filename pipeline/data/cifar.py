"""CIFAR-10 / CIFAR-100 in the official python-pickle layout (`cifar-10-batches-py`, `cifar-100-python`).

The batches are Python 2 pickles of dicts holding a uint8 array `data` (N x 3072, channel-major: 1024 red, then
green, then blue) and a label list. They are read with an unpickler that admits only numpy's array
reconstruction and nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import math
import os
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from dra_pipeline.data.base import ImageSource, SourceSpec, check_images_and_labels
from dra_pipeline.errors import DataError


def _reconstruct(subtype, shape, dtype):
    """numpy's pickle hook for arrays: an empty array, filled by __setstate__ afterwards."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing array subclass {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


# The only globals a CIFAR batch names: numpy's array rebuild (numpy 2 renamed numpy.core to numpy._core), and
# _codecs.encode, which protocol-2 pickles written by Python 3 use to rebuild bytes objects.
_ALLOWED = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Admits only _ALLOWED, and no array larger than the file it is read from (which holds all its bytes)."""

    def __init__(self, file, *, max_bytes: int, **kwargs):
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            found = _ALLOWED[(module, name)]
            return self._bounded_reconstruct if found is _reconstruct else found
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def _bounded_reconstruct(self, subtype, shape, dtype):
        nbytes = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize  # Python ints: no overflow
        if nbytes > self.max_bytes:
            raise pickle.UnpicklingError(f"an array of shape {tuple(shape)} is larger than the file")
        return _reconstruct(subtype, shape, dtype)


def load_batch(path: Path) -> dict:
    """One CIFAR batch file as a dict with str keys, without executing anything from the file."""
    try:
        with open(path, "rb") as f:
            obj = _DataOnlyUnpickler(f, max_bytes=os.fstat(f.fileno()).st_size, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, MemoryError) as e:
        raise DataError(f"{path}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR python batch (holds {type(obj).__name__}, expected dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise DataError(f"{path}: CIFAR batch has no {key!r} entry (keys: {sorted(batch)})")
    return batch[key]


class _CifarBase(ImageSource):
    files: ClassVar[dict[str, list[str]]]
    meta_file: str
    meta_key: str
    label_key: str

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        if spec.split not in self.files:
            raise DataError(f"{spec.kind}: unknown split {spec.split!r} (choose train or test)")
        directory = Path(spec.path)
        data, labels = [], []
        for name in self.files[spec.split]:
            batch = load_batch(directory / name)
            rows = np.asarray(_field(batch, "data", directory / name))
            if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
                raise DataError(f"{directory / name}: 'data' must be uint8 N x 3072, found {rows.dtype} {rows.shape}")
            data.append(rows)
            labels.append(np.asarray(_field(batch, self.label_key, directory / name)))
        self._images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.labels, _ = check_images_and_labels(
            f"{directory}", self._images.shape, self._images.dtype, np.concatenate(labels), self.num_classes
        )
        meta_path = directory / self.meta_file
        if meta_path.is_file():
            names = load_batch(meta_path).get(self.meta_key)
            if names is not None and len(names) == self.num_classes:
                self.class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (32, 32, 3)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self._images[start:stop]

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self._images[np.asarray(indices, dtype=np.int64)]


class Cifar10(_CifarBase):
    """CIFAR-10: 50,000 train (data_batch_1..5) / 10,000 test (test_batch), 32 x 32 x 3, 10 classes."""

    num_classes = 10
    files: ClassVar = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    meta_file, meta_key, label_key = "batches.meta", "label_names", "labels"


class Cifar100(_CifarBase):
    """CIFAR-100: 50,000 train / 10,000 test, 32 x 32 x 3, 100 fine classes."""

    num_classes = 100
    files: ClassVar = {"train": ["train"], "test": ["test"]}
    meta_file, meta_key, label_key = "meta", "fine_label_names", "fine_labels"
