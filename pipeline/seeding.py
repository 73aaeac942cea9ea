"""Random streams keyed by integers, e.g. (seed, row) or (seed, step): independent of batch size, order and the
number of processes.

torch's CPU generator keeps only the low 32 bits of its seed, so (seed << 32) + row would give every seed the
same noise; numpy's SeedSequence hashes the whole key (any number of integers) into the generator state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dra_pipeline.errors import DraError


def key_seed(*key: int) -> int:
    """A 32-bit seed hashed from a key of non-negative integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def keyed_generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` seeded by `key_seed(*key)`, e.g. (seed, 0, step) for a training step."""
    return torch.Generator(device=device).manual_seed(key_seed(*key))


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


def keyed_uniform(seed: int, rows: torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """U[0, 1) draws (len(rows), *shape) float32; row r's from a generator seeded by (seed, r)."""
    out = np.empty((len(rows), *shape), dtype=np.float32)
    for i, row in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
        out[i] = np.random.default_rng([seed, row]).random(shape, dtype=np.float32)
    return torch.from_numpy(out)


def subset_rows(start: int, stop: int, n: int, seed: int) -> np.ndarray:
    """n distinct rows drawn from [start, stop) by a generator seeded with `seed`, sorted (int64)."""
    if n > stop - start:
        raise DraError(f"asked for {n} images from a source of {stop - start}")
    return np.sort(np.random.default_rng(seed).choice(stop - start, size=n, replace=False)) + start
