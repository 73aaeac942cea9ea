"""The feature store (store.py) and the default home of `*.zarr` stores (git-ignored)."""

from dra_pipeline.cache.store import FORMAT_VERSION, FeatureStore

__all__ = ["FeatureStore", "FORMAT_VERSION"]
