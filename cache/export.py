"""Export a complete feature store to a single HDF5 file (features, labels, provenance as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from dra_pipeline.atomic import atomic_write
from dra_pipeline.cache.store import FeatureStore
from dra_pipeline.errors import StoreError


def export_hdf5(store: FeatureStore, target: Path, *, overwrite: bool = False) -> None:
    """Write datasets `features` (rows, views, dim), `labels` (rows,) and attribute `dra` (JSON).

    Shards are copied one at a time (each checked against its record); the file appears only when complete.
    """
    import h5py

    target = Path(target)
    missing = store.missing_shards()
    if missing:
        raise StoreError(f"{store.path}: {len(missing)} shards are not done; finish the extraction before exporting")
    if target.exists() and not overwrite:
        raise StoreError(f"{target} already exists; pass --overwrite to replace it")
    lay = store.layout

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            feats = f.create_dataset(
                "features",
                shape=(lay.rows, len(lay.views), lay.dim),
                dtype=lay.dtype,
                chunks=(min(lay.rows_per_shard, lay.rows), len(lay.views), lay.dim),
            )
            for k in range(lay.num_shards):
                start, stop = lay.shard_rows(k)
                feats[start:stop] = store.shard(k)
            f.create_dataset("labels", data=store.labels())
            f.attrs["dra"] = json.dumps(store.attrs)

    atomic_write(target, write)
