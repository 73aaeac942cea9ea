"""Per-channel pixel statistics of a source's rows: the input normalisation of a dataset with no published one."""

from __future__ import annotations

import numpy as np

from dra_pipeline.data.base import ImageSource

MAX_ROWS = 10_000  # rows read at most: evenly spaced beyond that (the mean and std of 10k images vary by ~1e-3)
BLOCK_ROWS = 256  # rows decoded per read


def channel_statistics(source: ImageSource, rows: np.ndarray, *, max_rows: int = MAX_ROWS) -> dict:
    """{"name": "computed", "mean", "std", "rows", "of"}: mean and std per channel of the pixels in [0, 1] of
    `rows` (at most `max_rows` of them, evenly spaced), summed in float64 and rounded to 6 decimals, so the same
    rows always give the same record."""
    rows = np.asarray(rows, dtype=np.int64)
    used = rows if len(rows) <= max_rows else rows[np.linspace(0, len(rows) - 1, max_rows).round().astype(np.int64)]
    channels = source.image_shape[2]
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(used), BLOCK_ROWS):
        pixels = source.read(used[start : start + BLOCK_ROWS]).reshape(-1, channels).astype(np.float64) / 255
        total += pixels.sum(0)
        squares += np.square(pixels).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: leave its scale alone
    return {
        "name": "computed",
        "mean": [round(float(m), 6) for m in mean],
        "std": [round(float(s), 6) for s in std],
        "rows": len(used),
        "of": len(rows),
    }
