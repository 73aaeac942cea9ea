"""Training batches by row: DM-AT's real/synthetic mix, augmentation, and targets from the feature store.

Every batch is a pure function of (seed, epoch, batch index): the rows (real ones shuffled without
replacement, synthetic ones drawn with replacement), the crops and the flips. A resumed run therefore sees the
same batches as an uninterrupted one without storing any sampler state beyond its position.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from dra_pipeline.data.indexed import IndexedImages


@dataclass(frozen=True)
class BatchPlan:
    real_rows: np.ndarray  # dataset rows of real training images (validation rows excluded)
    synthetic_rows: np.ndarray  # dataset rows of synthetic images (may be empty)
    batch_size: int  # global batch
    synthetic_fraction: float  # share of each batch from synthetic rows
    steps_per_epoch: int
    seed: int

    @property
    def n_synthetic(self) -> int:
        return round(self.batch_size * self.synthetic_fraction) if len(self.synthetic_rows) else 0

    def rows(self, epoch: int, index: int) -> np.ndarray:
        """Rows of batch `index` of `epoch` (batch_size,): real first, then synthetic."""
        n_real = self.batch_size - self.n_synthetic
        real = self.real_rows[self._order(epoch)[index * n_real : (index + 1) * n_real]]
        synth = np.random.default_rng([self.seed, epoch, index, 1]).integers(
            0, len(self.synthetic_rows) or 1, self.n_synthetic
        )
        return np.concatenate([real, self.synthetic_rows[synth] if self.n_synthetic else synth[:0]])

    def _order(self, epoch: int) -> np.ndarray:
        """Concatenated permutations of the real rows, enough for the epoch (cached for the latest epoch)."""
        cached = self.__dict__.get("_cached_order")
        if cached is None or cached[0] != epoch:
            n_real = self.batch_size - self.n_synthetic
            rng = np.random.default_rng([self.seed, epoch])
            laps = -(-(self.steps_per_epoch * n_real) // len(self.real_rows))
            cached = (epoch, np.concatenate([rng.permutation(len(self.real_rows)) for _ in range(laps)]))
            object.__setattr__(self, "_cached_order", cached)
        return cached[1]


def augment(
    images: np.ndarray,
    *,
    padding: int,
    flip: bool,
    rng: np.random.Generator,
    crop_size: int = 0,
    part: tuple[int, int] = (0, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop and random horizontal flip: uint8 (N, H, W, C) -> (N, S, S, C) and the flipped mask (N,).

    The crop is of side S = crop_size from the image when crop_size is set (e.g. 224 from 256), else of the image's
    own size after zero padding by `padding`. With part = (rank, world) the images are slice `rank` of a global
    batch of world * N and get that slice of the global batch's draws, so augmentation does not depend on the
    process count.
    """
    n, h, w, _ = images.shape
    rank, world = part
    mine = slice(rank * n, (rank + 1) * n)
    out = images
    if crop_size and crop_size < min(h, w):
        dy, dx = (rng.integers(0, side - crop_size + 1, world * n)[mine] for side in (h, w))
        out = np.stack([images[i, dy[i] : dy[i] + crop_size, dx[i] : dx[i] + crop_size] for i in range(n)])
    elif padding:
        padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        dy, dx = (rng.integers(0, 2 * padding + 1, world * n)[mine] for _ in range(2))
        out = np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flipped = rng.random(world * n)[mine] < 0.5 if flip else np.zeros(n, dtype=bool)
    out = out.copy() if out is images else out
    out[flipped] = out[flipped, :, ::-1]
    return out, flipped


@dataclass
class Batch:
    images: torch.Tensor  # float (n, C, H, W) in [0, 1]
    labels: torch.Tensor  # long (n,)
    rows: np.ndarray  # (n,)
    targets: torch.Tensor | None  # float (n, dim) teacher features matching each image's flip, or None
    flipped: np.ndarray  # bool (n,)


class BatchLoader:
    """Produces this rank's share of each batch in a background thread, `prefetch` batches ahead.

    Targets are read from the store here, never in the training step; `wait_seconds` accumulates the time
    the consumer spent blocked waiting for a batch (the feature-wait figure).
    """

    def __init__(
        self,
        plan: BatchPlan,
        images: IndexedImages,
        *,
        store=None,
        view: str = "clean",
        padding: int,
        flip: bool,
        crop_size: int = 0,
        rank: int = 0,
        world: int = 1,
        prefetch: int = 3,
        workers: int = 1,
    ):
        self.plan, self.images, self.store = plan, images, store
        self.padding, self.flip, self.crop_size = padding, flip, crop_size
        self.rank, self.world, self.prefetch, self.workers = rank, world, max(prefetch, workers), workers
        self.wait_seconds = 0.0
        if store is not None:
            views = list(store.layout.views)
            self.clean_view = views.index(view)
            self.flip_view = views.index("flip") if "flip" in views else None

    def batch(self, epoch: int, index: int) -> Batch:
        rows = self.plan.rows(epoch, index)
        share = len(rows) // self.world
        rows = rows[self.rank * share : (self.rank + 1) * share]
        pixels, labels = self.images.read(rows)
        rng = np.random.default_rng([self.plan.seed, epoch, index, 2, 0])  # the same draws on every rank
        pixels, flipped = augment(
            pixels,
            padding=self.padding,
            flip=self.flip,
            rng=rng,
            crop_size=self.crop_size,
            part=(self.rank, self.world),
        )
        targets = None
        if self.store is not None:
            feats = self.store.read(rows)  # (n, views, dim)
            pick = np.full(len(rows), self.clean_view)
            if self.flip_view is not None:
                pick[flipped] = self.flip_view  # a flipped image aligns with the flipped image's features
            targets = torch.from_numpy(feats[np.arange(len(rows)), pick].astype(np.float32))
        images = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
        return Batch(images, torch.from_numpy(labels), rows, targets, flipped)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches start..steps_per_epoch-1 of an epoch, in order, prepared by `workers` background threads."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            try:
                with ThreadPoolExecutor(self.workers) as pool:
                    pending: collections.deque = collections.deque()
                    for index in range(start, self.plan.steps_per_epoch):
                        if stop.is_set():
                            return
                        pending.append(pool.submit(self.batch, epoch, index))
                        if len(pending) >= self.workers:
                            q.put(pending.popleft().result())
                    while pending and not stop.is_set():
                        q.put(pending.popleft().result())
                q.put(None)
            except BaseException as e:  # surfaced in the consumer
                q.put(e)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                self.wait_seconds += time.perf_counter() - t0
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.1)
