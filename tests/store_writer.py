"""A store writer for the crash test: `python -m tests.store_writer PATH` creates or resumes a store and fills
every missing shard with features that depend only on (seed, shard)."""

import sys
from pathlib import Path

import numpy as np

from dra_pipeline.cache import FeatureStore

ROWS, DIM, RPS, INNER, SEED = 24_000, 256, 600, 40, 1234  # 40 shards of 300 KiB


def shard_features(shard: int) -> np.ndarray:
    start, stop = shard * RPS, min((shard + 1) * RPS, ROWS)
    return np.random.default_rng([SEED, shard]).standard_normal((stop - start, 1, DIM)).astype(np.float16)


def main(path: Path) -> None:
    if path.exists():
        store = FeatureStore.open(path, mode="r+")
    else:
        source = {"kind": "npz", "path": "/x.npz", "split": "all", "count": ROWS, "fingerprint": "f", "num_classes": 10}
        store = FeatureStore.create(
            path,
            sources=[source],
            labels=np.arange(ROWS) % 10,
            views=["clean"],
            dim=DIM,
            meta={"teacher": "crash-test"},
            rows_per_shard=RPS,
            inner_rows=INNER,
        )
    for shard in store.missing_shards():
        store.write_shard(shard, shard_features(shard))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
