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
from dra_pipeline.errors import DraError


@dataclass(frozen=True)
class BatchPlan:
    real_rows: np.ndarray  # dataset rows of real training images (validation rows excluded)
    synthetic_rows: np.ndarray  # dataset rows of synthetic images (may be empty)
    batch_size: int  # global batch
    synthetic_fraction: float  # share of each batch from synthetic rows: int(batch_size x share) of them
    steps_per_epoch: int
    seed: int

    @property
    def n_synthetic(self) -> int:
        # truncated as DM-AT's sampler does (int(512 x 0.7) = 358); rounding would give 359
        return int(self.batch_size * self.synthetic_fraction) if len(self.synthetic_rows) else 0

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


def validation_rows(labels: np.ndarray, n_val: int, how: str, *, class_sorted: bool) -> np.ndarray:
    """Rows of the real training set (labels (N,) int64) held out to pick the best checkpoint, sorted.

    "first": the first n_val rows (DM-AT's split of CIFAR). "spread": stratified, the same number of rows from every
    class (n_val // K each, one more for the first n_val % K classes; at most all but one of a class's rows),
    evenly spaced within the class, for sources sorted by class such as image folders. "auto": spread for a
    class-sorted source (`class_sorted`: anything but a named dataset), else first.
    """
    labels = np.asarray(labels)
    if n_val >= len(labels):
        raise DraError(f"data.validation={n_val} leaves no training images (the real set has {len(labels)})")
    how = ("spread" if class_sorted else "first") if how == "auto" else how
    if how == "first":
        return np.arange(n_val, dtype=np.int64)
    classes = np.unique(labels)
    picked = []
    for k, c in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        quota = min(n_val // len(classes) + (k < n_val % len(classes)), len(rows) - 1)
        if quota > 0:
            picked.append(rows[np.linspace(0, len(rows) - 1, quota).round().astype(np.int64)])
    return np.sort(np.concatenate(picked)) if picked else np.arange(0, dtype=np.int64)


def augment(
    images: np.ndarray,
    *,
    padding: int,
    flip: bool,
    rng: np.random.Generator,
    crop_size: int = 0,
    rotation: float = 0.0,
    part: tuple[int, int] = (0, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop, random horizontal flip, random rotation, in torchvision's order: uint8 (N, H, W, C) ->
    (N, S, S, C) and the flipped mask (N,).

    The crop is of side S = crop_size from the image when crop_size is set (e.g. 224 from 256), else of the image's
    own size after zero padding by `padding`. `rotation` (degrees) turns each image by an angle drawn uniformly from
    [-rotation, rotation] about its centre, nearest pixel, zero fill (torchvision's RandomRotation defaults). With
    part = (rank, world) the images are slice `rank` of a global batch of world * N and get that slice of the global
    batch's draws, so augmentation does not depend on the process count.
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
    if rotation:
        out = rotate(out, rng.uniform(-rotation, rotation, world * n)[mine])
    return out, flipped


def center_crop(images, size: int):
    """uint8 (N, H, W, C) -> (N, size, size, C) central crop; size 0 keeps the images."""
    if not size:
        return images
    h, w = images.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size]


def rotate(images: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Each uint8 image (N, H, W, C) turned counter-clockwise by degrees[i] about its centre: nearest pixel, zero
    outside (the sampling torchvision's rotate does for tensors)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    angle = torch.from_numpy(np.deg2rad(degrees)).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    h, w = x.shape[-2:]
    # output pixel -> input pixel: the inverse rotation, in the [-1, 1] grid (aspect ratio accounted for)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass
class Batch:
    images: torch.Tensor  # float (n, C, H, W) in [0, 1]
    labels: torch.Tensor  # long (n,)
    rows: np.ndarray  # (n,)
    targets: torch.Tensor | None  # float (n, K, dim): K teacher targets per image (matching its flip), or None
    flipped: np.ndarray  # bool (n,)


def target_views(views: list[str], extra_sigma: str) -> tuple[list[int], list[int]]:
    """The store views (indices) an image is aligned with: (for an un-flipped image, for a flipped one), K each.

    The first target is the `clean` view, or the `flip` view for a flipped image when the store has one (the
    features of the mirrored noisy image). A store with an `extra-sigma` view adds it as a second target
    (extra_sigma "add", the paper's additional representation) or makes it the only one for un-flipped images
    ("replace"). There is no flipped extra-sigma view: flipped images use the un-flipped one.
    """
    clean = views.index("clean") if "clean" in views else 0
    flip = views.index("flip") if "flip" in views else clean
    if "extra-sigma" not in views:
        return [clean], [flip]
    extra = views.index("extra-sigma")
    if extra_sigma == "replace":
        return [extra], [flip]
    return [clean, extra], [flip, extra]


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
        extra_sigma: str = "add",
        padding: int,
        flip: bool,
        crop_size: int = 0,
        rotation: float = 0.0,
        rank: int = 0,
        world: int = 1,
        prefetch: int = 3,
        workers: int = 1,
    ):
        self.plan, self.images, self.store = plan, images, store
        self.padding, self.flip, self.crop_size, self.rotation = padding, flip, crop_size, rotation
        self.rank, self.world, self.prefetch, self.workers = rank, world, max(prefetch, workers), workers
        self.wait_seconds = 0.0
        if store is not None:
            self.target_views = target_views(list(store.layout.views), extra_sigma)

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
            rotation=self.rotation,
            part=(self.rank, self.world),
        )
        targets = None
        if self.store is not None:
            feats = self.store.read(rows)  # (n, views, dim)
            pick = np.where(flipped[:, None], self.target_views[1], self.target_views[0])  # (n, K)
            targets = torch.from_numpy(feats[np.arange(len(rows))[:, None], pick].astype(np.float32))
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
