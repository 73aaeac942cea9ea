"""Extraction efficiency: `extract` images/s over the bare teacher forward's images/s, measured in one run.

    python bench/extract.py [--teacher edm-fmnist] [--checkpoint FILE] [--data SOURCE] [--rows 16384]
                            [--batch-size 256] [--device cpu]

Both sides run the same teacher on the same Fashion-MNIST rows at the same batch size and device. The bare side
has the images already in memory and keeps the features (no store, no I/O); the extract side is the stage as
the CLI runs it (image reads, float16 store writes, completion records, overlapped in threads).
Target: ratio >= 0.85 on a CPU, >= 0.95 on a GPU. On GPU both sides use bf16 autocast and channels-last,
as `extract` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.cache import FeatureStore
from dra_pipeline.data import open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.environment import describe, environment
from dra_pipeline.stages.extract import extract
from dra_pipeline.teachers import create_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="edm-fmnist")
    ap.add_argument("--checkpoint", type=Path, help="teacher weights (default: the teacher's own)")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_flush_denormal(True)
    print(f"machine: {describe(environment())}")
    teacher = create_teacher(args.teacher, checkpoint=args.checkpoint, device=args.device)
    images = IndexedImages([open_source(args.data)])
    rows = np.arange(min(args.rows, len(images)))
    views = ("clean",)

    autocast = args.device != "cpu"  # as `extract` runs: bf16 autocast and channels-last on GPU
    if autocast:
        teacher.to(memory_format=torch.channels_last)
    imgs, labels = images.read(rows)
    with torch.autocast(teacher.device.type, dtype=torch.bfloat16, enabled=autocast):
        teacher(imgs[: args.batch_size], labels[: args.batch_size], rows[: args.batch_size])  # warm-up
        start = time.perf_counter()
        for a in range(0, len(rows), args.batch_size):
            b = slice(a, a + args.batch_size)
            teacher(imgs[b], labels[b], rows[b]).cpu()
        bare = len(rows) / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        dim = teacher(imgs[:1], labels[:1], rows[:1]).shape[-1]
        store = FeatureStore.create(
            Path(tmp) / "bench.zarr",
            sources=images.describe(),
            labels=images.labels[rows],
            views=views,
            dim=dim,
            meta=teacher.provenance(views),
            limit=len(rows),
        )
        start = time.perf_counter()
        extract(teacher, images, store, views=views, batch_size=args.batch_size, autocast=autocast)
        staged = len(rows) / (time.perf_counter() - start)
        assert store.complete

    print(f"teacher {args.teacher} at {teacher.layer}, {len(rows)} rows, batch {args.batch_size}, {args.device}")
    print(f"bare teacher forward: {bare:8.1f} img/s")
    print(f"extract (store):      {staged:8.1f} img/s")
    ratio = staged / bare
    target = 0.85 if args.device == "cpu" else 0.95
    print(f"ratio extract / bare: {ratio:.3f}  (target >= {target}: {'met' if ratio >= target else 'NOT met'})")
    print(f"projected full Fashion-MNIST train split (60000 rows): {60000 / staged:.0f} s")


if __name__ == "__main__":
    main()
