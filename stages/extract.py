"""Stage one: run a frozen teacher once over every row of an index space and fill a feature store.

Row r's features depend only on (teacher, seed, r) and the fixed batch boundaries: batches start at shard
boundaries and hold `batch_size` rows, so a resumed or multi-process run writes the same bytes as one
uninterrupted run. Loading the next shard's images, computing, and writing the previous shard overlap
(two I/O threads beside the compute loop); `workers` threads decode each shard's images (Pillow releases the GIL
while decoding, so the threads of a JPEG folder such as ImageNet decode in parallel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from dra_pipeline.cache import FeatureStore
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.teachers import Teacher
from dra_pipeline.teachers.base import told_labels


def extract(
    teacher: Teacher,
    images: IndexedImages,
    store: FeatureStore,
    *,
    views: tuple[str, ...],
    batch_size: int,
    shards: Iterable[int] | None = None,
    autocast: bool = False,
    workers: int = 1,
    teacher_labels: str = "true",
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Fill the store's missing shards (only those in `shards`, when given: the ones this process owns).

    teacher_labels: what a class-conditional teacher is told, each image's label ("true") or class 0 ("fixed",
    so that the features describe the image without carrying its label).

    Returns the shards written. progress(n) is called with the number of rows finished after each batch.
    """
    lay = store.layout
    todo = [k for k in store.missing_shards() if shards is None or k in set(shards)]
    if not todo:
        return []

    def load(shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, stop = lay.shard_rows(shard)
        rows = np.arange(start, stop)
        parts = list(decoders.map(images.read, np.array_split(rows, min(workers, len(rows)))))
        return rows, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    with (
        ThreadPoolExecutor(max_workers=1) as reader,
        ThreadPoolExecutor(max_workers=1) as writer,
        ThreadPoolExecutor(max_workers=workers) as decoders,
    ):
        pending_read: Future = reader.submit(load, todo[0])
        pending_write: Future | None = None
        for i, shard in enumerate(todo):
            rows, imgs, labels = pending_read.result()
            if i + 1 < len(todo):
                pending_read = reader.submit(load, todo[i + 1])
            feats = np.empty((len(rows), len(views), lay.dim), dtype=np.float32)
            for a in range(0, len(rows), batch_size):
                b = min(a + batch_size, len(rows))
                with torch.autocast(teacher.device.type, dtype=torch.bfloat16, enabled=autocast):
                    out = teacher(imgs[a:b], told_labels(labels[a:b], teacher_labels), rows[a:b], views=views)
                feats[a:b] = out.float().cpu().numpy()
                if progress:
                    progress(b - a)
            if pending_write is not None:
                pending_write.result()  # one shard in flight: bounded memory, errors surface here
            pending_write = writer.submit(store.write_shard, shard, feats)
        if pending_write is not None:
            pending_write.result()
    return todo
