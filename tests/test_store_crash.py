"""Kill a store writer with SIGKILL at random moments; every rerun resumes, and the result is byte-identical."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline.cache import FeatureStore
from tests import store_writer

ROOT = Path(__file__).resolve().parents[1]


def run_writer(path: Path, kill_after: float | None = None) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.store_writer", str(path)], cwd=ROOT)
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def check_done_shards(path: Path) -> int:
    """Every shard reported done holds exactly its intended rows; returns how many are done."""
    if not path.exists():
        return 0
    store = FeatureStore.open(path, ram_budget_bytes=0)
    missing = set(store.missing_shards())
    for k in range(store.layout.num_shards):
        if k not in missing:
            np.testing.assert_array_equal(store.shard(k), store_writer.shard_features(k), err_msg=f"shard {k}")
    return store.layout.num_shards - len(missing)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    reference = tmp_path / "reference.zarr"
    start = time.perf_counter()
    run_writer(reference)
    full_run = time.perf_counter() - start

    ref = FeatureStore.open(reference)
    rng = np.random.default_rng(2026)
    done_after_kill = []
    for attempt in range(12):  # each: a fresh store, killed once, resumed and killed again, then completed
        crashed = tmp_path / f"crashed-{attempt}.zarr"
        for _ in range(2):
            run_writer(crashed, kill_after=float(rng.uniform(0.1, full_run)))
            done_after_kill.append(check_done_shards(crashed))
        run_writer(crashed)
        got = FeatureStore.open(crashed)
        assert got.complete and not got.verify()
        assert [ref.record(k)["sha256"] for k in range(40)] == [got.record(k)["sha256"] for k in range(40)]
        for k in range(40):
            assert ref._shard_file(k).read_bytes() == got._shard_file(k).read_bytes(), f"shard {k}"
        assert not list(crashed.rglob("*.partial")) and not list(tmp_path.glob(f".{crashed.name}.*"))
    print("shards done at each kill:", done_after_kill)
    assert sum(0 < d < 40 for d in done_after_kill) >= 10, f"too few kills landed mid-write: {done_after_kill}"
