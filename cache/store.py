"""The feature store: a Zarr v3 group that stage one fills shard by shard and stage two reads by row.

Layout of `NAME.zarr/`:
  zarr.json             group; attributes["dra"] holds the format version, shape and the provenance
  features/             float16 (or float32) rows x views x dim, sharding codec, uncompressed
  labels/               int64 rows, written once at creation (their sha256 is in the attributes)
  done/NNNNNN.json      one completion record per shard: its rows, the sha256 of the values written and the
                        sha256 and size of the whole shard file (chunks, sharding index and its crc32c)

Crash safety. A store appears under its name only once its metadata and labels are complete (built in a
hidden folder, then renamed). A shard counts as done only when its record exists; the record is written after
the shard is on disk (fsync), by temp file and rename. zarr's LocalStore replaces shard files atomically but a
file that exists may still belong to an interrupted run, so it is never trusted without a record. Each shard
has one owner: `write_shard(k)` always writes the whole shard k, so two workers never share a shard file.

Ownership. Creating, resuming and replacing a store happen under its lock (`.NAME.lock` beside it, lock.py), so
a second writer waits or refuses. A path that is not a store is never written or removed. Replacing a store made
with other settings (`overwrite`) fills a new store beside it (`.NAME.overwrite`) and swaps it in only once it
is complete; hidden staging folders carry their creator's host and pid and are removed only when that process
is gone. Rerunning a writer re-hashes every done shard file against its record and rewrites any that differ
(`repair`): about 1 s per GB, small beside the extraction that wrote it.

Reads. Training reads rows in random order. zarr-python's orthogonal indexing costs 40-85 ms per 512 rows, so
`read` never uses it: stores that fit `ram_budget_bytes` are loaded into RAM once (each shard checked against
its record as it loads); larger ones are memory-mapped shard by shard, using the sharding codec's on-disk
layout (inner chunks stored raw, a little-endian (offset, nbytes) uint64 index plus crc32c at the end), each
shard checked against its record the first time it is touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.errors import StoreError, StoreMismatch
from dra_pipeline.hashing import file_sha256
from dra_pipeline.lock import exclusive, pid_alive
from dra_pipeline.version import __version__

log = logging.getLogger(__name__)

FORMAT = "dra-feature-store"
# 2: source fingerprints hash every byte of every row; records hold the whole shard file's hash; labels are hashed
FORMAT_VERSION = 2
LOCK_WAIT_S = 10.0  # seconds a second writer of one store waits for the first before refusing
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


def labels_sha256(labels: np.ndarray) -> str:
    """sha256 of labels as little-endian int64: what a store records at creation and `verify` checks."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


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
    except (OSError, ValueError, AttributeError):
        return False


def pending_path(path: Path) -> Path:
    """Where `overwrite` builds a store that replaces the one at `path` once complete."""
    path = Path(path)
    return path.with_name(f".{path.name}.overwrite")


def _owner_tag() -> str:
    """host-pid-random: names a hidden folder so that a later writer can tell whether its creator still runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _abandoned(folder: Path, prefix: str) -> bool:
    """A hidden `<prefix>host-pid-random` folder whose creating process is gone (never one of another host)."""
    try:
        host, pid, _ = folder.name.removeprefix(prefix).rsplit("-", 2)
    except ValueError:
        return False
    return host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid))


def check_target(path: Path) -> None:
    """Raise StoreError when `path` exists and is not a feature store: such a path is never written or removed."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_store(path):
        raise _not_a_store(path)


def _not_a_store(path: Path) -> StoreError:
    kind = "a folder" if path.is_dir() else "a file"
    return StoreError(f"{path} exists and is not a feature store ({kind}); it is left alone: choose another --out")


def _tidy(path: Path) -> None:
    """Under the lock: finish a swap that a killed writer began, then remove its abandoned hidden folders."""
    retired = sorted(path.parent.glob(f".{path.name}.replaced-*"))
    pending = pending_path(path)
    if not path.exists() and retired and is_store(pending):  # killed between the two renames of `publish`
        os.rename(pending, path)
    for prefix in (f".{path.name}.creating-", f".{path.name}.replaced-"):
        for folder in path.parent.glob(f"{prefix}*"):
            if _abandoned(folder, prefix):
                shutil.rmtree(folder, ignore_errors=True)


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
        limit: int | None = None,
    ) -> FeatureStore:
        """Create an empty store (every shard missing) and return it open for writing.

        sources: ordered `ImageSource.describe()` dicts; their counts must sum to len(labels), or the store
        covers only the first `limit` rows of their index space and len(labels) == limit.
        meta: provenance (teacher, checkpoint hash, sigma, layer, pooling, zeroed channels, seed, ...).
        The store appears at `path` only when complete; an existing path is never replaced (see create_or_resume).
        """
        import zarr

        path = Path(path)
        if dtype not in DTYPES:
            raise StoreError(f"store dtype must be one of {DTYPES}, not {dtype!r}")
        if rows_per_shard < 1 or (inner_rows is not None and inner_rows < 1):
            raise StoreError(f"rows_per_shard ({rows_per_shard}) and inner_rows ({inner_rows}) must be at least 1")
        inner_rows = inner_rows or math.gcd(rows_per_shard, DEFAULT_INNER_ROWS)
        if rows_per_shard % inner_rows:
            raise StoreError(f"rows_per_shard ({rows_per_shard}) must be a multiple of inner_rows ({inner_rows})")
        if not views or len(set(views)) != len(views):
            raise StoreError(f"a store needs one or more distinct views, not {list(views)}")
        labels = np.asarray(labels, dtype=np.int64)
        rows = int(labels.shape[0])
        offsets = np.cumsum([0] + [int(s["count"]) for s in sources])
        expected_rows = offsets[-1] if limit is None else min(limit, offsets[-1])
        if rows != expected_rows or rows < 1:
            raise StoreError(f"sources hold {expected_rows} images (limit {limit}) but {rows} labels were given")
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
            "labels_sha256": labels_sha256(labels),
            "sources": [{**s, "offset": int(o)} for s, o in zip(sources, offsets)],
            "provenance": dict(meta),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create a store at {path}: {e.strerror} ({e.filename})") from None
        with exclusive(path, wait_s=LOCK_WAIT_S, what="store writer"):
            if path.exists() or path.is_symlink():
                if not is_store(path):
                    raise _not_a_store(path)
                raise StoreError(f"{path} already exists (a feature store); resume it or pass --overwrite")
            _tidy(path)
            staging = path.with_name(f".{path.name}.creating-{_owner_tag()}")
            try:
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
                os.rename(staging, path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
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
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            when = "an older" if isinstance(version, int) and version < FORMAT_VERSION else "another"
            raise StoreError(
                f"{path}: made by {when} version of dra-pipeline (store format {version}, this tool reads "
                f"{FORMAT_VERSION}); re-extract it"
            )
        store = cls(path, attrs, writable=mode == "r+", ram_budget_bytes=ram_budget_bytes)
        if expect:
            store.check(expect)
        return store

    @classmethod
    def create_or_resume(cls, path: str | os.PathLike, *, overwrite: bool = False, **create_kw) -> FeatureStore:
        """The store to fill for `path`: the one there if it was made with the same settings, else a new one.

        "The same settings" means equal provenance (`meta`), layout and source identities; any difference is a
        StoreMismatch naming the field. With `overwrite`, a store made with other settings (or by an older
        version) stays in place while a new one fills `.NAME.overwrite` beside it; `publish()` swaps it in once
        complete, and a rerun with the same settings resumes it. A path that is not a store is never touched.
        Call it (and fill the store) inside `writer(path)` so that no other process writes meanwhile.
        """
        path = Path(path)
        with exclusive(path, wait_s=LOCK_WAIT_S, what="store writer"):
            _tidy(path)
            if not path.exists() and not path.is_symlink():
                return cls.create(path, **create_kw)
            if not is_store(path):
                raise _not_a_store(path)
            try:
                store = cls._resume(path, create_kw)
                pending = pending_path(path)
                if pending.exists():  # kept: it may be hours of extraction the user comes back to
                    log.warning(
                        f"{pending} holds an unfinished replacement of {path.name} (an --overwrite with other "
                        "settings): rerun those settings with --overwrite to finish it, or delete it to free the space"
                    )
                return store
            except StoreMismatch as e:
                if not overwrite:
                    raise StoreMismatch(
                        f"{e}. Rerun with the original settings to resume, or pass --overwrite"
                    ) from None
            except StoreError as e:
                if not overwrite:
                    raise StoreError(f"{e} (or pass --overwrite to replace it)") from None
            pending = pending_path(path)
            if pending.exists() or pending.is_symlink():
                try:
                    return cls._resume(pending, create_kw)
                except StoreError:  # an unfinished replacement with yet other settings: ours to discard
                    if not is_store(pending):
                        raise _not_a_store(pending) from None
                    shutil.rmtree(pending)
            return cls.create(pending, **create_kw)

    @classmethod
    def _resume(cls, path: Path, create_kw: dict) -> FeatureStore:
        """Open `path` for writing if it was made with create_kw's settings; StoreError (or StoreMismatch) if not."""
        expect = {
            **create_kw["meta"],
            "dim": create_kw["dim"],
            "views": list(create_kw["views"]),
            "dtype": create_kw.get("dtype", "float16"),
            "rows": len(create_kw["labels"]),
            "sources": create_kw["sources"],
        }
        store = cls.open(path, mode="r+", expect=expect)
        if store.layout.rows_per_shard != create_kw.get("rows_per_shard", DEFAULT_ROWS_PER_SHARD):
            raise StoreMismatch(f"{path}: rows_per_shard is {store.layout.rows_per_shard} in the store")
        return store

    @classmethod
    def open_for_writing(cls, path: str | os.PathLike, **create_kw) -> FeatureStore:
        """The store another rank fills once rank 0's `create_or_resume` returned: `path` when it holds these
        settings, else the replacement being built beside it."""
        path = Path(path)
        try:
            return cls._resume(path, create_kw)
        except StoreError:
            return cls._resume(pending_path(path), create_kw)

    @staticmethod
    def writer(path: str | os.PathLike, *, wait_s: float | None = None):
        """The store's lock, held by the one process that creates, fills and publishes it (lock.py); a second
        writer waits up to wait_s seconds (default LOCK_WAIT_S) and then refuses."""
        return exclusive(Path(path), wait_s=LOCK_WAIT_S if wait_s is None else wait_s, what="store writer")

    @property
    def final_path(self) -> Path:
        """Where this store lives once published: its own path, or the store it replaces."""
        name = self.path.name
        if name.startswith(".") and name.endswith(".overwrite"):
            return self.path.with_name(name[1 : -len(".overwrite")])
        return self.path

    def publish(self) -> FeatureStore:
        """Move a complete replacement store into place, then remove the store it replaces; returns the store
        opened at its final path (this object keeps the old path). Returns self for a store already in place;
        raises StoreError when shards are missing.
        """
        final = self.final_path
        if final == self.path:
            return self
        missing = self.missing_shards()
        if missing:
            raise StoreError(f"{self.path}: {len(missing)} shards missing; the old store at {final} stays in place")
        with exclusive(final, wait_s=LOCK_WAIT_S, what="store writer"):
            if (final.exists() or final.is_symlink()) and not is_store(final):
                raise _not_a_store(final)
            retired = final.with_name(f".{final.name}.replaced-{_owner_tag()}")
            if final.exists():
                os.rename(final, retired)
            os.rename(self.path, final)
            shutil.rmtree(retired, ignore_errors=True)
        return FeatureStore(final, self.attrs, writable=self.writable, ram_budget_bytes=self._ram_budget)

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
        if not isinstance(rec, dict) or not {"sha256", "file_sha256", "file_bytes"} <= rec.keys():
            return None
        if rec.get("shard") != shard or rec.get("rows") != list(self.layout.shard_rows(shard)):
            return None
        return rec

    def identity(self) -> str:
        """What a run trains on, as 16 hex characters: sha256 of the provenance, layout, source identities, the
        labels' hash and every shard record's hashes. Re-extracting with any other setting changes it."""
        payload = {
            "provenance": self.provenance,
            "layout": dataclasses.asdict(self.layout),
            "sources": [{k: s.get(k) for k in SOURCE_IDENTITY} for s in self.sources],
            "labels_sha256": self.attrs.get("labels_sha256"),
            "shards": [(self.record(k) or {}).get("sha256") for k in range(self.layout.num_shards)],
        }
        return hashlib.sha256(json.dumps(_normalise(payload), sort_keys=True).encode()).hexdigest()[:16]

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
        path = self._shard_file(shard)
        _fsync(path)
        record = {
            "shard": shard,
            "rows": [start, stop],
            "sha256": sha256_of(data),
            "file_sha256": file_sha256(path),  # the whole file: chunks, sharding index and its crc32c
            "file_bytes": path.stat().st_size,
        }
        atomic_write_text(self._record_path(shard), json.dumps(record))

    def check_shard_file(self, shard: int) -> str | None:
        """None when the shard's file matches its completion record byte for byte, else what is wrong."""
        rec, path = self.record(shard), self._shard_file(shard)
        start, stop = self.layout.shard_rows(shard)
        where = f"{self.path}: shard {shard} (rows {start}-{stop - 1})"
        if rec is None:
            return f"{where} has no completion record; the extraction did not finish: rerun it to resume"
        try:
            size = path.stat().st_size
            same = size == rec["file_bytes"] and file_sha256(path) == rec["file_sha256"]
        except OSError as e:
            return f"{where}: cannot read its file ({e.strerror}); rerun the extract command to rewrite it"
        if not same:
            what = "truncated" if size < rec["file_bytes"] else "corrupt"
            return f"{where}: its file differs from its completion record ({what}); rerun extract to rewrite it"
        return None

    def check_labels(self) -> str | None:
        """None when the labels array holds the labels hashed at creation, else what is wrong."""
        try:
            ok = labels_sha256(self.labels()) == self.attrs.get("labels_sha256")
        except Exception as e:  # zarr raises many kinds on a damaged array: any of them means damaged
            return f"{self.path}: labels/ cannot be read ({type(e).__name__}); rerun the extract command to rewrite it"
        return None if ok else f"{self.path}: labels/ differ from the labels hashed at creation (corrupt)"

    def repair(self, labels: np.ndarray) -> list[int]:
        """Rewrite labels/ if damaged (from `labels`, the sources' labels, which must hash as recorded) and forget
        every done shard whose file differs from its record, so that it is extracted again. Returns those shards.

        Hashes every done shard file: about 1 s per GB read, a small fraction of the extraction that wrote it.
        """
        if not self.writable:
            raise StoreError(f"{self.path} is open read-only")
        if self.check_labels() is not None:
            if labels_sha256(labels) != self.attrs.get("labels_sha256"):
                raise StoreError(f"{self.path}: labels/ are damaged and the given labels differ; re-extract it")
            import zarr

            zarr.open_array(self.path / "labels", mode="r+")[:] = np.asarray(labels, dtype=np.int64)
        bad = [k for k in range(self.layout.num_shards) if self.record(k) and self.check_shard_file(k)]
        for k in bad:
            self._record_path(k).unlink(missing_ok=True)
            self._shard_file(k).unlink(missing_ok=True)  # zarr must not read a damaged shard to merge into it
        self._shards.clear()
        return bad

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
                    "rerun the extract command to rewrite it"
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
        """Re-hash every shard file (chunks, sharding index, crc32c) against its record and the labels against
        their creation hash; returns one problem line per damaged or missing part."""
        problems = [p for p in [self.check_labels()] if p]
        self._shards.clear()
        for k in range(self.layout.num_shards):
            problem = self.check_shard_file(k)
            if problem is None:
                try:
                    self.shard(k)
                except StoreError as e:
                    problem = str(e)
            if problem:
                problems.append(problem)
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
