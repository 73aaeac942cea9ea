"""The feature store: a Zarr v3 group that stage one fills shard by shard and stage two reads by row.

Layout of `NAME.zarr/`:
  zarr.json             group; attributes["dra"] holds the format version, shape and the provenance
  features/             float16 (or float32) rows x views x dim, sharding codec, uncompressed
  labels/               int64 rows, written once at creation
  done/NNNNNN.json      one completion record per shard: its rows and the sha256 of the bytes written

Crash safety. A store appears under its name only once its metadata and labels are complete (built in a
hidden folder, then renamed). A shard counts as done only when its record exists; the record is written after
the shard is on disk (fsync), by temp file and rename. zarr's LocalStore replaces shard files atomically but a
file that exists may still belong to an interrupted run, so it is never trusted without a record. Each shard
has one owner: `write_shard(k)` always writes the whole shard k, so two workers never share a shard file.

Reads. Training reads rows in random order. zarr-python's orthogonal indexing costs 40-85 ms per 512 rows, so
`read` never uses it: stores that fit `ram_budget_bytes` are loaded into RAM once (each shard checked against
its record as it loads); larger ones are memory-mapped shard by shard, using the sharding codec's on-disk
layout (inner chunks stored raw, a little-endian (offset, nbytes) uint64 index plus crc32c at the end), each
shard checked against its record the first time it is touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.errors import StoreError, StoreMismatch
from dra_pipeline.version import __version__

FORMAT = "dra-feature-store"
FORMAT_VERSION = 1
DTYPES = ("float16", "float32")
DEFAULT_ROWS_PER_SHARD = 4096  # 4 MiB per shard for 512-d float16, one view
DEFAULT_INNER_ROWS = 64  # rows per inner chunk (zarr-python and tensorstore read granularity)
DEFAULT_RAM_BUDGET = 8 << 30  # bytes: stores up to this size are read from RAM
_EMPTY = np.iinfo(np.uint64).max  # shard-index entry of a chunk that was never written
# Fields that identify a source's content; its path may change (data moved) without changing the rows.
SOURCE_IDENTITY = ("kind", "split", "count", "offset", "image_shape", "num_classes", "fingerprint")


@dataclass(frozen=True)
class Layout:
    rows: int
    views: tuple[str, ...]
    dim: int
    dtype: str
    rows_per_shard: int
    inner_rows: int

    @property
    def num_shards(self) -> int:
        return -(-self.rows // self.rows_per_shard)

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """[start, stop) rows of a shard."""
        start = shard * self.rows_per_shard
        return start, min(start + self.rows_per_shard, self.rows)


def sha256_of(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features).tobytes()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_store(path: Path) -> bool:
    meta = Path(path) / "zarr.json"
    try:
        return json.loads(meta.read_text()).get("attributes", {}).get("dra", {}).get("format") == FORMAT
    except (OSError, ValueError):
        return False


class FeatureStore:
    """Pooled teacher features, rows x views x dim, addressed by dataset row (source offset + index)."""

    def __init__(self, path: Path, attrs: dict, *, writable: bool, ram_budget_bytes: int):
        import zarr

        self.path = Path(path)
        self.attrs = attrs
        self.writable = writable
        self.layout = Layout(
            rows=attrs["rows"],
            views=tuple(attrs["views"]),
            dim=attrs["dim"],
            dtype=attrs["dtype"],
            rows_per_shard=attrs["rows_per_shard"],
            inner_rows=attrs["inner_rows"],
        )
        features = zarr.open_array(self.path / "features", mode="r+" if writable else "r")
        self._features = features.with_config({"write_empty_chunks": True})  # an all-zero shard is still a file
        self._ram_budget = ram_budget_bytes
        self._ram: np.ndarray | None = None
        self._shards: dict[int, np.ndarray] = {}  # memory-mapped, verified shards

    # ----------------------------------------------------------------------------------------------- creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        sources: list[dict],
        labels: np.ndarray,
        views: list[str],
        dim: int,
        meta: dict,
        dtype: Literal["float16", "float32"] = "float16",
        rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
        inner_rows: int | None = None,
        overwrite: bool = False,
        limit: int | None = None,
    ) -> FeatureStore:
        """Create an empty store (every shard missing) and return it open for writing.

        sources: ordered `ImageSource.describe()` dicts; their counts must sum to len(labels), or the store
        covers only the first `limit` rows of their index space and len(labels) == limit.
        meta: provenance (teacher, checkpoint hash, sigma, layer, pooling, zeroed channels, seed, ...).
        The store appears at `path` only when complete; an existing path is replaced only with overwrite.
        """
        import zarr

        path = Path(path)
        if dtype not in DTYPES:
            raise StoreError(f"store dtype must be one of {DTYPES}, not {dtype!r}")
        inner_rows = inner_rows or math.gcd(rows_per_shard, DEFAULT_INNER_ROWS)
        if rows_per_shard % inner_rows:
            raise StoreError(f"rows_per_shard ({rows_per_shard}) must be a multiple of inner_rows ({inner_rows})")
        labels = np.asarray(labels, dtype=np.int64)
        rows = int(labels.shape[0])
        offsets = np.cumsum([0] + [int(s["count"]) for s in sources])
        expected_rows = offsets[-1] if limit is None else min(limit, offsets[-1])
        if rows != expected_rows:
            raise StoreError(f"sources hold {expected_rows} images (limit {limit}) but {rows} labels were given")
        if path.exists() and not overwrite:
            what = "a feature store" if is_store(path) else "not a feature store"
            raise StoreError(f"{path} already exists ({what}); pass --overwrite to replace it")
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tool": f"dra-pipeline {__version__}",
            "rows": rows,
            "limit": limit,
            "views": list(views),
            "dim": int(dim),
            "dtype": dtype,
            "rows_per_shard": int(rows_per_shard),
            "inner_rows": int(inner_rows),
            "sources": [{**s, "offset": int(o)} for s, o in zip(sources, offsets)],
            "provenance": dict(meta),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.creating-*"):  # a creation killed before its rename
            shutil.rmtree(stale, ignore_errors=True)
        staging = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
        group = zarr.open_group(staging, mode="w", zarr_format=3, attributes={"dra": attrs})
        group.create_array(
            "features",
            shape=(rows, len(views), dim),
            dtype=dtype,
            chunks=(inner_rows, len(views), dim),
            shards=(rows_per_shard, len(views), dim),
            compressors=None,
            filters=None,
            fill_value=0,
            config={"write_empty_chunks": True},
            dimension_names=["row", "view", "channel"],
        )
        group.create_array("labels", data=labels, chunks=(rows_per_shard,), compressors=None)
        (staging / "done").mkdir()
        if path.exists():  # overwrite: the old store leaves only once the new one is ready
            retired = path.with_name(f".{path.name}.replaced-{uuid.uuid4().hex[:8]}")
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired) if retired.is_dir() else retired.unlink()
        else:
            os.replace(staging, path)
        return cls(path, attrs, writable=True, ram_budget_bytes=DEFAULT_RAM_BUDGET)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        expect: dict | None = None,
        mode: Literal["r", "r+"] = "r",
        ram_budget_bytes: int = DEFAULT_RAM_BUDGET,
    ) -> FeatureStore:
        """Open an existing store; mode "r" is read-only, "r+" allows `write_shard` (resuming).

        expect: fields the caller requires, compared with the store's provenance and layout (`dim`, `views`,
        `dtype`, `rows`) and, under "sources", with each source's identity (count, offset, fingerprint, ...).
        Any difference raises StoreMismatch naming the field.
        """
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such feature store")
        if not is_store(path):
            raise StoreError(f"{path} is not a dra feature store (no zarr.json with format {FORMAT!r})")
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]["dra"]
        if attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format version {attrs.get('format_version')}, this tool reads {FORMAT_VERSION}"
            )
        store = cls(path, attrs, writable=mode == "r+", ram_budget_bytes=ram_budget_bytes)
        if expect:
            store.check(expect)
        return store

    @classmethod
    def create_or_resume(cls, path: str | os.PathLike, *, overwrite: bool = False, **create_kw) -> FeatureStore:
        """Open the store at `path` for writing if it was made with the same settings, else create it.

        "The same settings" means equal provenance (`meta`), layout and source identities; any difference is a
        StoreMismatch naming the field, unless `overwrite` replaces the store.
        """
        path = Path(path)
        if overwrite or not path.exists():
            return cls.create(path, overwrite=overwrite, **create_kw)
        expect = {
            **create_kw["meta"],
            "dim": create_kw["dim"],
            "views": list(create_kw["views"]),
            "dtype": create_kw.get("dtype", "float16"),
            "rows": len(create_kw["labels"]),
            "sources": create_kw["sources"],
        }
        try:
            store = cls.open(path, mode="r+", expect=expect)
        except StoreMismatch as e:
            raise StoreMismatch(f"{e}. Rerun with the original settings to resume, or pass --overwrite") from None
        if store.layout.rows_per_shard != create_kw.get("rows_per_shard", DEFAULT_ROWS_PER_SHARD):
            raise StoreMismatch(f"{path}: rows_per_shard is {store.layout.rows_per_shard} in the store")
        return store

    def check(self, expect: dict) -> None:
        """Raise StoreMismatch on the first field of `expect` that differs from the store."""
        have = {**self.attrs["provenance"], **{k: self.attrs[k] for k in ("rows", "dim", "views", "dtype")}}
        for key, want in expect.items():
            if key == "sources":
                self._check_sources(want)
            elif key not in have:
                raise StoreMismatch(f"{self.path}: store records no {key!r} (expected {want!r})")
            elif _normalise(have[key]) != _normalise(want):
                raise StoreMismatch(f"{self.path}: {key} is {have[key]!r} in the store but {want!r} was expected")

    def _check_sources(self, want: list[dict]) -> None:
        have = self.attrs["sources"]
        if len(have) != len(want):
            raise StoreMismatch(f"{self.path}: store has {len(have)} sources but {len(want)} were given")
        offset = 0
        for i, (h, w) in enumerate(zip(have, want)):
            w = {"offset": offset, **w}
            offset += int(w["count"])
            for field in SOURCE_IDENTITY:
                if field in w and _normalise(h.get(field)) != _normalise(w[field]):
                    raise StoreMismatch(
                        f"{self.path}: sources[{i}].{field} ({h.get('kind')} {h.get('path')}) is "
                        f"{h.get(field)!r} in the store but {w[field]!r} in the data; the data changed "
                        "since extraction: re-extract or point at the original files"
                    )

    # ------------------------------------------------------------------------------------------------ status
    @property
    def sources(self) -> list[dict]:
        return self.attrs["sources"]

    @property
    def provenance(self) -> dict:
        return self.attrs["provenance"]

    def labels(self) -> np.ndarray:
        import zarr

        return zarr.open_array(self.path / "labels", mode="r")[:]

    def _record_path(self, shard: int) -> Path:
        return self.path / "done" / f"{shard:06d}.json"

    def record(self, shard: int) -> dict | None:
        """The completion record of a shard, or None if the shard is not done."""
        try:
            rec = json.loads(self._record_path(shard).read_text())
        except (OSError, ValueError):
            return None
        if rec.get("shard") != shard or rec.get("rows") != list(self.layout.shard_rows(shard)):
            return None
        return rec

    def summary(self) -> list[str]:
        """What `cache info` prints: shape, dtype, shards done and missing, sources, provenance."""
        lay, missing = self.layout, self.missing_shards()
        lines = [
            f"{self.path}: {lay.rows} rows x {len(lay.views)} views ({', '.join(lay.views)}) x {lay.dim} {lay.dtype}",
            f"shards: {lay.num_shards - len(missing)} of {lay.num_shards} done ({lay.rows_per_shard} rows each)",
        ]
        lines += [f"missing: {ranges(missing)}"] if missing else []
        lines.append("sources:")
        for s in self.sources:
            lines.append(
                f"  rows {s['offset']}+{s['count']}: {s['kind']} {s['split']} {s['path']} [{s['fingerprint']}]"
            )
        lines.append("provenance: " + json.dumps(self.provenance, indent=2, sort_keys=True))
        return lines

    def missing_shards(self) -> list[int]:
        """Shards without a completion record (a shard file without a record counts as missing)."""
        return [k for k in range(self.layout.num_shards) if self.record(k) is None]

    @property
    def complete(self) -> bool:
        return not self.missing_shards()

    # ------------------------------------------------------------------------------------------------ writing
    def write_shard(self, shard: int, features: np.ndarray) -> None:
        """Write all rows of one shard, then its completion record. features: (shard rows, views, dim)."""
        if not self.writable:
            raise StoreError(f"{self.path} is open read-only")
        lay = self.layout
        if not 0 <= shard < lay.num_shards:
            raise StoreError(f"shard {shard} out of range (store has {lay.num_shards})")
        start, stop = lay.shard_rows(shard)
        want = (stop - start, len(lay.views), lay.dim)
        if tuple(features.shape) != want:
            raise StoreError(f"shard {shard} needs features of shape {want}, got {tuple(features.shape)}")
        with np.errstate(over="ignore"):  # overflow to Inf is reported just below
            data = np.ascontiguousarray(features, dtype=np.dtype(lay.dtype).newbyteorder("<"))
        if not np.isfinite(data).all():
            raise StoreError(f"shard {shard}: features contain NaN or Inf (after casting to {lay.dtype})")
        self._remove_leftovers(shard)
        self._features[start:stop] = data
        _fsync(self._shard_file(shard))
        record = {"shard": shard, "rows": [start, stop], "sha256": sha256_of(data)}
        atomic_write_text(self._record_path(shard), json.dumps(record))

    def _shard_file(self, shard: int) -> Path:
        return self.path / "features" / "c" / str(shard) / "0" / "0"

    def _remove_leftovers(self, shard: int) -> None:
        """Delete what an interrupted write of this shard may have left: zarr temp files, record temp files."""
        self._record_path(shard).unlink(missing_ok=True)
        shard_dir = self._shard_file(shard).parent
        if shard_dir.is_dir():
            for p in shard_dir.glob("*.partial"):
                p.unlink(missing_ok=True)
        for p in (self.path / "done").glob(f".{shard:06d}.json.*.tmp"):
            p.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------------ reading
    def read(self, rows: np.ndarray) -> np.ndarray:
        """Features of the given dataset rows (any order, repeats allowed): (len(rows), views, dim)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.layout.rows):
            raise StoreError(f"rows out of range [0, {self.layout.rows}): {rows.min()}..{rows.max()}")
        if self._ram is None and self.nbytes <= self._ram_budget:
            self._ram = self._load_all()
        if self._ram is not None:
            return self._ram[rows]
        return self._read_mapped(rows)

    @property
    def nbytes(self) -> int:
        lay = self.layout
        return lay.rows * len(lay.views) * lay.dim * np.dtype(lay.dtype).itemsize

    def _load_all(self) -> np.ndarray:
        lay = self.layout
        out = np.empty((lay.rows, len(lay.views), lay.dim), dtype=lay.dtype)
        for k in range(lay.num_shards):
            start, stop = lay.shard_rows(k)
            out[start:stop] = self.shard(k)
        return out

    def _read_mapped(self, rows: np.ndarray) -> np.ndarray:
        lay = self.layout
        out = np.empty((len(rows), len(lay.views), lay.dim), dtype=lay.dtype)
        shards, within = np.divmod(rows, lay.rows_per_shard)
        # A plain loop beats grouping by shard here: random batches touch ~one row per shard.
        for i, (k, j) in enumerate(zip(shards.tolist(), within.tolist())):
            out[i] = (self._shards.get(k) if k in self._shards else self.shard(k))[j]
        return out

    def shard(self, shard: int) -> np.ndarray:
        """One done shard, memory-mapped and checked against its record: (shard rows, views, dim)."""
        if shard not in self._shards:
            rec = self.record(shard)
            if rec is None:
                start, stop = self.layout.shard_rows(shard)
                raise StoreError(
                    f"{self.path}: shard {shard} (rows {start}-{stop - 1}) has no completion record; "
                    "the extraction did not finish: rerun the same extract command to resume"
                )
            data = self._map_shard(shard)
            if sha256_of(data) != rec["sha256"]:
                raise StoreError(
                    f"{self.path}: shard {shard} does not match the hash in its completion record (corrupt); "
                    "run `dra-pipeline cache verify` and re-extract"
                )
            self._shards[shard] = data
        return self._shards[shard]

    def _map_shard(self, shard: int) -> np.ndarray:
        """Decode one shard file by the sharding codec's layout: raw inner chunks + trailing index."""
        lay = self.layout
        start, stop = lay.shard_rows(shard)
        itemsize = np.dtype(lay.dtype).itemsize
        chunk_shape = (lay.inner_rows, len(lay.views), lay.dim)
        chunk_bytes = int(np.prod(chunk_shape)) * itemsize
        n_chunks = lay.rows_per_shard // lay.inner_rows
        path = self._shard_file(shard)
        try:
            raw = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.path}: cannot read shard {shard} ({e})") from None
        index_bytes = 16 * n_chunks + 4  # uint64 (offset, nbytes) per chunk, then crc32c
        if raw.size < index_bytes:
            raise StoreError(f"{self.path}: shard {shard} file is truncated")
        index = np.frombuffer(raw[raw.size - index_bytes : raw.size - 4], dtype="<u8").reshape(n_chunks, 2)
        dtype = np.dtype(lay.dtype).newbyteorder("<")
        contiguous = np.array_equal(index[:, 0], np.arange(n_chunks, dtype=np.uint64) * chunk_bytes)
        if contiguous and (index[:, 1] == chunk_bytes).all():
            whole = raw[: n_chunks * chunk_bytes].view(dtype).reshape(lay.rows_per_shard, *chunk_shape[1:])
            return whole[: stop - start]
        pieces = []
        for off, nbytes in index:
            if off == _EMPTY:
                pieces.append(np.zeros(chunk_shape, dtype))
            elif nbytes != chunk_bytes or off + nbytes > raw.size:
                raise StoreError(f"{self.path}: shard {shard} has an unexpected chunk layout (compressed?)")
            else:
                pieces.append(raw[int(off) : int(off + nbytes)].view(dtype).reshape(chunk_shape))
        return np.concatenate(pieces)[: stop - start]

    def verify(self) -> list[str]:
        """Re-hash every shard against its record; returns one problem line per bad or missing shard."""
        problems = []
        self._shards.clear()
        for k in range(self.layout.num_shards):
            try:
                self.shard(k)
            except StoreError as e:
                problems.append(str(e))
        self._shards.clear()
        return problems


def _normalise(value):
    """JSON round trip, so tuples and lists (and numpy scalars) compare equal."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def ranges(items: list[int]) -> str:
    """Shard numbers as ranges: [1, 2, 3, 7] -> '1-3, 7'."""
    runs: list[list[int]] = []
    for i in items:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)
