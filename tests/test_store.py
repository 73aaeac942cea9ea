"""The feature-store contract, run against both read paths (in RAM and memory-mapped shards)."""

import json

import numpy as np
import pytest

from dra_pipeline.cache import FeatureStore
from dra_pipeline.cache.store import sha256_of
from dra_pipeline.errors import StoreError, StoreMismatch
from dra_pipeline.hashing import file_sha256

ROWS, VIEWS, DIM, RPS, INNER = 300, 2, 12, 64, 16  # 5 shards, the last one partial (44 rows)
SOURCES = [
    {"kind": "npz", "path": "/data/a.npz", "split": "all", "count": 200, "fingerprint": "aaaa", "num_classes": 10},
    {"kind": "npz", "path": "/data/b.npz", "split": "all", "count": 100, "fingerprint": "bbbb", "num_classes": 10},
]
META = {"teacher": "tiny", "checkpoint_sha256": "c0ffee", "sigma": [0.06], "layer": "dec.8x8_block4", "seed": 7}
READ_MODES = {"ram": 1 << 40, "mmap": 0}  # ram budget in bytes


def expected(rows=ROWS):
    return np.random.default_rng(0).standard_normal((rows, VIEWS, DIM)).astype(np.float16)


def make(path, *, fill=True, dtype="float16", **kw):
    store = FeatureStore.create(
        path,
        sources=SOURCES,
        labels=np.arange(ROWS) % 10,
        views=["clean", "flip"],
        dim=DIM,
        meta=META,
        dtype=dtype,
        rows_per_shard=RPS,
        inner_rows=INNER,
        **kw,
    )
    if fill:
        feats = expected().astype(dtype)
        for k in range(store.layout.num_shards):
            a, b = store.layout.shard_rows(k)
            store.write_shard(k, feats[a:b])
    return store


@pytest.mark.parametrize("mode", READ_MODES)
def test_rows_read_back_in_any_order(tmp_path, mode):
    make(tmp_path / "s.zarr")
    store = FeatureStore.open(tmp_path / "s.zarr", ram_budget_bytes=READ_MODES[mode])
    rows = np.random.default_rng(1).integers(0, ROWS, 97)
    rows[:3] = [299, 0, 299]
    np.testing.assert_array_equal(store.read(rows), expected()[rows])
    assert store.read(np.array([], dtype=np.int64)).shape == (0, VIEWS, DIM)
    np.testing.assert_array_equal(store.labels(), np.arange(ROWS) % 10)


@pytest.mark.parametrize("mode", READ_MODES)
def test_an_all_zero_shard_is_written_and_verified(tmp_path, mode):
    """zarr skips chunks equal to the fill value unless told otherwise; a reopened store must still write them."""
    make(tmp_path / "s.zarr", fill=False)
    store = FeatureStore.open(tmp_path / "s.zarr", mode="r+")
    for k in range(store.layout.num_shards):
        a, b = store.layout.shard_rows(k)
        store.write_shard(k, np.zeros((b - a, VIEWS, DIM)) if k == 1 else expected()[a:b])
    reader = FeatureStore.open(tmp_path / "s.zarr", ram_budget_bytes=READ_MODES[mode])
    assert reader.complete and not reader.verify()
    assert not reader.read(np.arange(RPS, 2 * RPS)).any()


@pytest.mark.parametrize("mode", READ_MODES)
def test_float32_store(tmp_path, mode):
    make(tmp_path / "s.zarr", dtype="float32")
    store = FeatureStore.open(tmp_path / "s.zarr", ram_budget_bytes=READ_MODES[mode])
    assert store.read(np.array([5])).dtype == np.float32
    np.testing.assert_array_equal(store.read(np.arange(ROWS)), expected().astype(np.float32))


def test_mapped_reader_handles_chunks_zarr_left_unwritten(tmp_path):
    """An all-zero inner chunk may be absent from a shard's index (empty entry): it must read as zeros."""
    import zarr

    store = make(tmp_path / "s.zarr", fill=False)
    feats = expected()
    feats[INNER : 2 * INNER] = 0
    z = zarr.open_array(tmp_path / "s.zarr" / "features", mode="r+", config={"write_empty_chunks": False})
    z[0:RPS] = feats[:RPS]  # zarr writes shard 0 without its zero chunk
    shard_file = tmp_path / "s.zarr" / "features" / "c" / "0" / "0" / "0"
    record = {"shard": 0, "rows": [0, RPS], "sha256": sha256_of(feats[:RPS]), "file_sha256": file_sha256(shard_file)}
    (tmp_path / "s.zarr" / "done" / "000000.json").write_text(
        json.dumps({**record, "file_bytes": shard_file.stat().st_size})
    )
    reader = FeatureStore.open(store.path, ram_budget_bytes=0)
    np.testing.assert_array_equal(reader.read(np.arange(RPS)), feats[:RPS])


def test_provenance_and_sources_are_recorded(tmp_path):
    store = FeatureStore.open(make(tmp_path / "s.zarr").path)
    assert store.provenance == META
    assert [s["offset"] for s in store.sources] == [0, 200]
    assert store.layout.views == ("clean", "flip") and store.layout.num_shards == 5


def test_tensorstore_reads_the_same_values(tmp_path):
    ts = pytest.importorskip("tensorstore", reason="tensorstore is in the test extra")
    make(tmp_path / "s.zarr")
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "s.zarr" / "features")}}
    arr = ts.open(spec, read=True).result()
    assert tuple(arr.shape) == (ROWS, VIEWS, DIM)
    np.testing.assert_array_equal(arr.read().result(), expected())
    labels = ts.open({**spec, "kvstore": {**spec["kvstore"], "path": str(tmp_path / "s.zarr" / "labels")}}).result()
    np.testing.assert_array_equal(labels.read().result(), np.arange(ROWS) % 10)


def test_missing_shards_and_resume(tmp_path):
    store = make(tmp_path / "s.zarr", fill=False)
    assert store.missing_shards() == [0, 1, 2, 3, 4] and not store.complete
    feats = expected()
    store.write_shard(3, feats[192:256])
    store = FeatureStore.open(tmp_path / "s.zarr", mode="r+")
    assert store.missing_shards() == [0, 1, 2, 4]
    with pytest.raises(StoreError, match="shard 0 .rows 0-63. has no completion record"):
        FeatureStore.open(tmp_path / "s.zarr").read(np.array([1]))
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "s.zarr", ram_budget_bytes=0).read([200]), feats[[200]])


def test_shard_file_without_record_is_not_trusted(tmp_path):
    store = make(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "done" / "000002.json").unlink()
    assert (tmp_path / "s.zarr" / "features" / "c" / "2" / "0" / "0").exists()
    assert store.missing_shards() == [2]
    assert any("shard 2" in p and "no completion record" in p for p in store.verify())


def test_corrupt_shard_fails_hash_check(tmp_path):
    make(tmp_path / "s.zarr")
    shard = tmp_path / "s.zarr" / "features" / "c" / "1" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0xFF
    shard.write_bytes(bytes(raw))
    store = FeatureStore.open(tmp_path / "s.zarr", ram_budget_bytes=0)
    assert [p for p in store.verify() if "shard 1 (rows 64-127): its file differs from its completion record" in p]
    with pytest.raises(StoreError, match="shard 1 does not match"):
        store.read(np.array([70]))
    np.testing.assert_array_equal(store.read(np.array([10])), expected()[[10]])  # other shards still read


def test_interrupted_write_leftovers_are_cleaned(tmp_path):
    store = make(tmp_path / "s.zarr", fill=False)
    shard_dir = tmp_path / "s.zarr" / "features" / "c" / "0" / "0"
    shard_dir.mkdir(parents=True)
    (shard_dir / "0.deadbeef.partial").write_bytes(b"half a shard")
    (tmp_path / "s.zarr" / "done" / ".000000.json.cafe.tmp").write_text("{")
    store.write_shard(0, expected()[:RPS])
    assert not list(shard_dir.glob("*.partial")) and not list((tmp_path / "s.zarr" / "done").glob(".*.tmp"))
    assert store.missing_shards() == [1, 2, 3, 4]


def test_write_shard_checks_shape_finiteness_and_mode(tmp_path):
    store = make(tmp_path / "s.zarr", fill=False)
    with pytest.raises(StoreError, match=r"shape \(64, 2, 12\)"):
        store.write_shard(0, np.zeros((63, VIEWS, DIM)))
    bad = np.zeros((RPS, VIEWS, DIM))
    bad[3, 1, 2] = np.nan
    with pytest.raises(StoreError, match="NaN or Inf"):
        store.write_shard(0, bad)
    with pytest.raises(StoreError, match="NaN or Inf"):  # finite in float64, overflows float16
        store.write_shard(0, np.full((RPS, VIEWS, DIM), 1e6))
    with pytest.raises(StoreError, match="out of range"):
        store.write_shard(5, np.zeros((RPS, VIEWS, DIM)))
    with pytest.raises(StoreError, match="read-only"):
        FeatureStore.open(store.path).write_shard(0, np.zeros((RPS, VIEWS, DIM)))
    assert store.missing_shards() == [0, 1, 2, 3, 4]


def test_expect_names_the_differing_field(tmp_path):
    make(tmp_path / "s.zarr")
    path = tmp_path / "s.zarr"
    FeatureStore.open(path, expect={"teacher": "tiny", "dim": DIM, "views": ("clean", "flip"), "sources": SOURCES})
    moved = [dict(SOURCES[0], path="/elsewhere/a.npz"), SOURCES[1]]
    FeatureStore.open(path, expect={"sources": moved})  # moving the data is fine
    with pytest.raises(StoreMismatch, match="layer is 'dec.8x8_block4' in the store but 'dec.16x16_up'"):
        FeatureStore.open(path, expect={"layer": "dec.16x16_up"})
    with pytest.raises(StoreMismatch, match="dim is 12"):
        FeatureStore.open(path, expect={"dim": 640})
    changed = [SOURCES[0], dict(SOURCES[1], fingerprint="cccc")]
    with pytest.raises(StoreMismatch, match=r"sources\[1\].fingerprint .*'bbbb' in the store but 'cccc'"):
        FeatureStore.open(path, expect={"sources": changed})
    with pytest.raises(StoreMismatch, match="2 sources but 1"):
        FeatureStore.open(path, expect={"sources": SOURCES[:1]})
    with pytest.raises(StoreMismatch, match="records no 'noise'"):
        FeatureStore.open(path, expect={"noise": "x"})


def test_existing_path_is_never_overwritten_without_flag(tmp_path):
    not_a_store = tmp_path / "s.zarr"
    not_a_store.mkdir()
    (not_a_store / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="exists and is not a feature store .a folder.; it is left alone") as e:
        make(not_a_store)
    assert "--overwrite" not in str(e.value)
    assert (not_a_store / "precious.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="is not a dra feature store"):
        FeatureStore.open(not_a_store)
    make(tmp_path / "t.zarr")
    with pytest.raises(StoreError, match="already exists .a feature store."):
        make(tmp_path / "t.zarr", fill=False)
    assert FeatureStore.open(tmp_path / "t.zarr").complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "t.zarr"], "no staging, retired or lock files left"


def test_labels_must_match_source_counts(tmp_path):
    with pytest.raises(StoreError, match=r"sources hold 300 images \(limit None\) but 299 labels"):
        FeatureStore.create(tmp_path / "s.zarr", sources=SOURCES, labels=np.zeros(299), views=["clean"], dim=4, meta={})
    assert not (tmp_path / "s.zarr").exists()
