"""Per-item random streams keyed by integers, e.g. (seed, row): independent of batch size and order.

torch's CPU generator keeps only the low 32 bits of its seed, so (seed << 32) + row would give every seed the
same noise; numpy's SeedSequence hashes the whole key (any number of integers) into the generator state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def keyed_normal(key: Sequence[int], items: Sequence[int], shape: tuple[int, ...], extra: int = 0):
    """Standard normal draws per item: (len(items), *shape) float32, and (len(items), extra) more after them.

    Item i's draws come from a generator seeded by (*key, items[i]) alone.
    """
    out = np.empty((len(items), *shape), dtype=np.float32)
    more = np.empty((len(items), extra), dtype=np.float32)
    for i, item in enumerate(np.asarray(items, dtype=np.int64).tolist()):
        g = np.random.default_rng([*key, item])
        out[i] = g.standard_normal(shape, dtype=np.float32)
        more[i] = g.standard_normal(extra, dtype=np.float32)
    return torch.from_numpy(out), torch.from_numpy(more)
