"""Small datasets written in the real on-disk formats (IDX gz, CIFAR python batches, npz, HDF5, image folder)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

# two local processes under torchrun; --standalone lets it pick a free rendezvous port, so concurrent test runs on one
# machine do not collide on a fixed one
TORCHRUN_TWO = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


def random_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """IDX: two zero bytes, type 0x08 (uint8), rank, big-endian uint32 sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_fashion_mnist(directory: Path, n_train: int = 50, n_test: int = 20) -> dict:
    """A Fashion-MNIST folder as Debian installs it; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n, seed in (("train", "train", n_train, 1), ("test", "t10k", n_test, 2)):
        images = random_images(n, 28, 28, 1, seed)[..., 0]
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[split] = (images[..., None], labels.astype(np.int64))
    return out


def _pickle_py2(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(directory: Path, images: np.ndarray, labels: np.ndarray, test_images=None, test_labels=None):
    """`cifar-10-batches-py`: data_batch_1..5 (images split evenly), test_batch, batches.meta.

    Each batch is a pickled dict with bytes keys, as the official files (written by Python 2) load with
    encoding="bytes"; `data` is uint8 N x 3072 channel-major, `labels` a list of ints.
    """
    directory.mkdir(parents=True, exist_ok=True)
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    for i, (part, lab) in enumerate(zip(np.array_split(flat, 5), np.array_split(labels, 5)), start=1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in lab],
            b"data": part,
            b"filenames": [f"img_{j}.png".encode() for j in range(len(lab))],
        }
        _pickle_py2(batch, directory / f"data_batch_{i}")
    if test_images is None:
        test_images, test_labels = images[:10], labels[:10]
    test_flat = test_images.transpose(0, 3, 1, 2).reshape(len(test_images), 3072)
    _pickle_py2(
        {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test_labels], b"data": test_flat},
        directory / "test_batch",
    )
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle_py2({b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}, directory / "batches.meta")


def write_cifar100(directory: Path, images: np.ndarray, fine: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    for split in ("train", "test"):
        _pickle_py2(
            {b"data": flat, b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine]},
            directory / split,
        )
    _pickle_py2(
        {
            b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)],
        },
        directory / "meta",
    )


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], ext: str = ".png") -> None:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / classes[int(lab)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(d / f"{i:05d}{ext}")
