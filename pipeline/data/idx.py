"""Fashion-MNIST (and MNIST-layout) IDX files, gzip-compressed or plain.

IDX: 2 zero bytes, a type code (0x08 = uint8), the rank, then `rank` big-endian uint32 sizes, then the data.
Both splits are small (47 MB decoded), so they are decoded into RAM once, on open.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from dra_pipeline.data.base import ImageSource, SourceSpec, check_images_and_labels
from dra_pipeline.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def read_idx(path: Path, rank: int) -> np.ndarray:
    """Decode one IDX file (optionally .gz) holding uint8 data of the given rank."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot decompress IDX file ({e}); the file is truncated or corrupt") from None
    header = 4 + 4 * rank
    if len(raw) < header or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic bytes)")
    if raw[2] != 0x08 or raw[3] != rank:
        raise DataError(f"{path}: expected uint8 IDX data of rank {rank}, found type 0x{raw[2]:02x} rank {raw[3]}")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: header says {shape} ({expected} bytes) but the file holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


class FashionMNIST(ImageSource):
    """Fashion-MNIST: 60,000 train / 10,000 test, 28 x 28 x 1, 10 classes."""

    num_classes = 10
    class_names = CLASS_NAMES

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        if spec.split not in FILES:
            raise DataError(f"fashion-mnist: unknown split {spec.split!r} (choose train or test)")
        directory = Path(spec.path)
        paths = [_find(directory, stem) for stem in FILES[spec.split]]
        for stem, p in zip(FILES[spec.split], paths):
            if p is None:
                raise DataError(f"fashion-mnist: {directory / (stem + '.gz')} not found")
        images = read_idx(paths[0], rank=3)
        labels = read_idx(paths[1], rank=1)
        self._images = images[..., None]  # (N, 28, 28, 1)
        self.labels, _ = check_images_and_labels(
            f"fashion-mnist {spec.split}", self._images.shape, self._images.dtype, labels, self.num_classes
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._images.shape[1:])

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self._images[start:stop]

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self._images[np.asarray(indices, dtype=np.int64)]
