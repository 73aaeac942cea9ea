"""Massive-activation channels: channels whose mean |activation| dwarfs the rest (Sun et al. 2024).

A few channels of a transformer's residual stream can carry activations orders of magnitude above the others;
mean-pooled features are then dominated by them, which is why DRA zeroes them before pooling. They are found,
never hard-coded: per channel, the mean |activation| over images and positions (or tokens), compared with the
median channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.errors import DraError
from dra_pipeline.teachers.base import Teacher

# Ordinary channels stay within a few times the median (edm-fmnist's 7x7 decoder: the largest at 1.9x; the random
# tiny teachers: under 5x); massive activations (Sun et al. 2024) sit orders of magnitude above it. 20x lies far
# from both, so the verdict does not hinge on the sample.
MASSIVE_RATIO = 20.0
AUTO_SAMPLE = 256  # images (evenly spaced rows) that `--zero-channels auto` reads
BATCH_SIZE = 64


@dataclass(frozen=True)
class ChannelStat:
    channel: int
    mean_abs: float  # mean |activation| over images and positions/tokens, in the layer's units
    ratio: float  # mean_abs / the median channel's mean_abs
    massive: bool  # ratio > the threshold the stats were computed with


def channel_mean_abs(teacher: Teacher, images, labels, rows, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Mean |activation| per channel (C,) float64 of the teacher's layer at its noise level, before zeroing."""
    total, count = None, 0
    with _without_zeroing(teacher):
        for start in range(0, len(rows), batch_size):
            s = slice(start, start + batch_size)
            a = teacher.layer_activations(images[s], labels[s], rows[s])[0].abs().double()
            per_channel = a.sum(dim=(0, 2, 3)) if a.dim() == 4 else a.flatten(0, -2).sum(0)
            total = per_channel if total is None else total + per_channel
            count += a.numel() // a.shape[1 if a.dim() == 4 else -1]
    return (total / count).cpu().numpy()


def find_massive_channels(teacher: Teacher, images, labels, rows, *, ratio: float = MASSIVE_RATIO) -> list[ChannelStat]:
    """Every channel of the teacher's layer, largest mean |activation| first, marked massive above `ratio` x median.

    images uint8 (N, H, W, C), labels (N,), rows (N,) seed the noise as in the teacher contract.
    """
    mean_abs = channel_mean_abs(teacher, np.asarray(images), np.asarray(labels), np.asarray(rows, dtype=np.int64))
    median = float(np.median(mean_abs))
    scale = median if median > 0 else float("inf")  # an all-zero median: no channel is called massive
    order = np.argsort(-mean_abs, kind="stable")
    return [
        ChannelStat(int(c), float(mean_abs[c]), float(mean_abs[c] / scale), bool(mean_abs[c] / scale > ratio))
        for c in order
    ]


def resolve_zero_channels(spec: str, teacher: Teacher, images: IndexedImages | None = None) -> tuple[int, ...]:
    """`--zero-channels` text -> sorted channel indices of the teacher's layer.

    auto: the massive channels found on AUTO_SAMPLE evenly spaced rows of `images` (MASSIVE_RATIO x median);
    none: (); "i,j,...": those channels, each checked against the layer's width.
    """
    spec = spec.strip()
    if spec == "none":
        return ()
    if spec == "auto":
        if images is None:
            raise DraError("--zero-channels auto needs images to detect massive channels on")
        rows = sample_rows(len(images), AUTO_SAMPLE)
        pixels, labels = images.read(rows)
        return tuple(sorted(s.channel for s in find_massive_channels(teacher, pixels, labels, rows) if s.massive))
    try:
        channels = sorted({int(c) for c in spec.split(",") if c.strip()})
    except ValueError:
        channels = []
    if not channels:
        raise DraError(f"--zero-channels: expected auto, none or channel numbers like 3,17; got {spec!r}")
    width = layer_width(teacher)
    bad = [c for c in channels if not 0 <= c < width]
    if bad:
        raise DraError(f"--zero-channels {bad}: {teacher.layer} has {width} channels (0..{width - 1})")
    return tuple(channels)


def sample_rows(count: int, n: int) -> np.ndarray:
    """min(n, count) evenly spaced distinct rows of [0, count), int64: a fixed sample independent of any seed."""
    return np.unique(np.linspace(0, count - 1, num=min(n, count)).round().astype(np.int64))


def layer_width(teacher: Teacher) -> int:
    """Channel count of the teacher's layer, from one forward pass on a black image."""
    s = teacher.spec
    black = np.zeros((1, s.resolution, s.resolution, s.channels), dtype=np.uint8)
    a = teacher.layer_activations(black, [0], [0])[0]
    return int(a.shape[1 if a.dim() == 4 else -1])


@contextmanager
def _without_zeroing(teacher: Teacher) -> Iterator[None]:
    """Read the layer as the network computes it: zeroed channels would read as 0 and hide a massive one."""
    saved = teacher.zero_channels
    teacher.set_zero_channels(())
    try:
        yield
    finally:
        teacher.set_zero_channels(saved)
