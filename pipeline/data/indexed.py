"""The index space: several sources in a fixed order, row = offset(source) + index within it."""

from __future__ import annotations

import numpy as np

from dra_pipeline.data.base import ImageSource
from dra_pipeline.errors import DataError


class IndexedImages:
    """Ordered sources seen as one array of rows. All sources must share one image shape."""

    def __init__(self, sources: list[ImageSource]):
        if not sources:
            raise DataError("no image sources given")
        shapes = {s.image_shape for s in sources}
        if len(shapes) > 1:
            names = ", ".join(f"{s.name} {s.image_shape}" for s in sources)
            raise DataError(f"sources have different image shapes: {names}")
        self.sources = sources
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self.labels = np.concatenate([s.labels for s in sources])
        self.num_classes = max(s.num_classes for s in sources)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.sources[0].image_shape

    def describe(self) -> list[dict]:
        """What a store records: each source's spec, count, shape, classes, fingerprint and row offset."""
        return [{**s.describe(), "offset": int(o)} for s, o in zip(self.sources, self.offsets)]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 (n, H, W, C), labels int64 (n,)) for dataset rows in any order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise DataError(f"rows out of range [0, {len(self)})")
        images = np.empty((len(rows), *self.image_shape), dtype=np.uint8)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(which):
            mask = which == k
            images[mask] = self.sources[k].read(rows[mask] - self.offsets[k])
        return images, self.labels[rows]
