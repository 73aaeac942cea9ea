"""`extract` killed (SIGKILL) at 20 random moments, creating a store and replacing one with --overwrite, and two
writers racing to create one store on a slow filesystem: every final store is byte-identical to an uninterrupted
one, or the command is refused with nothing damaged; after every kill the store's path holds either nothing, the
old complete store or a store whose every done shard is right."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline.cache import FeatureStore
from tests.hostile import fmnist, shard_files, snapshot

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20  # half while creating stores, half while replacing complete stores with --overwrite
ROWS = 400  # 50 shards of 8 rows: writing them takes longer than the checks before, so kills land mid-write


class Zygote:
    """tests/extract_zygote.py: forks `dra-pipeline` processes that start without re-importing torch."""

    def __init__(self):
        cmd = [sys.executable, "-m", "tests.extract_zygote"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "READY"

    def _ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def start(self, args, pause_s: float = 0) -> int:
        return int(self._ask("RUN " + json.dumps({"args": [str(a) for a in args], "pause_s": pause_s})).split()[1])

    def wait(self, pid: int) -> int:
        return int(self._ask(f"WAIT {pid}").split()[1])

    def run(self, args) -> float:
        start = time.perf_counter()
        assert self.wait(self.start(args)) == 0
        return time.perf_counter() - start

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = fmnist(root, n_train=ROWS)
    zygote = Zygote()

    def args(out, *extra):
        common = ["--data", "fashion-mnist", "--data-dir", data, "--rows-per-shard", 8, "--batch-size", 8]
        return ["extract", "--teacher", "tiny-gray", *common, "--device", "cpu", "--out", out, *extra]

    start, pid = time.perf_counter(), zygote.start(args(root / "ref0.zarr"))
    while not (root / "ref0.zarr").exists():
        time.sleep(0.01)
    created = time.perf_counter() - start  # the store appears: the settings are checked, the teacher is built
    assert zygote.wait(pid) == 0
    full = time.perf_counter() - start
    zygote.run(args(root / "ref1.zarr", "--seed", 1))
    refs = {0: shard_files(root / "ref0.zarr"), 1: shard_files(root / "ref1.zarr")}
    yield root, zygote, args, refs, (0.5 * created, full)  # kills land from mid-setup to the end of writing
    zygote.close()


def check_after_kill(out: Path, refs: dict, allowed: tuple[int, ...]) -> str:
    """What the store's path holds after a kill: 'none', or which reference it matches (complete or in part)."""
    if not out.exists():
        return "none"
    store = FeatureStore.open(out)
    done = [k for k in range(store.layout.num_shards) if store.record(k)]
    files = shard_files(out)
    names = [n for k in done for n in (f"features/c/{k}/0/0", f"done/{k:06d}.json")]  # what a done shard is
    for seed in allowed:
        if store.provenance["seed"] == seed and all(files[n] == refs[seed][n] for n in names):
            return f"seed {seed}, {store.layout.num_shards - len(done)} missing"
    raise AssertionError(f"{out} after a kill: a shard reported done differs from every reference store")


def kill_twice_then_finish(zygote, args, out, refs, allowed, window, rng) -> list[str]:
    """SIGKILL `extract ARGS` at a random moment, then again while it resumes; check the path after each kill."""
    seen = []
    for _ in range(2):
        pid = zygote.start(args)
        time.sleep(float(rng.uniform(*window)))
        os.kill(pid, signal.SIGKILL)
        zygote.wait(pid)
        seen.append(check_after_kill(out, refs, allowed))
    zygote.run(args)
    return seen


def test_extract_killed_at_20_random_moments_resumes_to_identical_stores(setup):
    root, zygote, args, refs, window = setup
    rng = np.random.default_rng(17)
    seen = []
    for i in range(KILLS // 4):  # creating a store
        out = root / f"created-{i}.zarr"
        seen += kill_twice_then_finish(zygote, args(out), out, refs, (0,), window, rng)
        assert shard_files(out) == refs[0] and not FeatureStore.open(out).verify()
    for i in range(KILLS // 4):  # replacing a complete store made with seed 0 by one made with seed 1
        out = root / f"replaced-{i}.zarr"
        shutil.copytree(root / "ref0.zarr", out)
        replaced = kill_twice_then_finish(zygote, args(out, "--overwrite", "--seed", 1), out, refs, (0, 1), window, rng)
        assert all(s in ("seed 0, 0 missing", "seed 1, 0 missing") for s in replaced), replaced  # never half-swapped
        assert shard_files(out) == refs[1] and not FeatureStore.open(out).verify()
        seen += replaced
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"hidden folders or locks left behind: {leftovers}"
    print(f"kills at {window[0]:.2f}-{window[1]:.2f} s; the path after each:", seen)
    mid_write = [s for s in seen[: KILLS // 2] if s != "none" and not s.endswith(" 0 missing")]
    assert len(mid_write) >= 3, f"too few kills landed while shards were being written: {seen}"


def test_two_writers_racing_on_a_slow_filesystem_give_one_good_store(setup):
    root, zygote, args, refs, _ = setup
    out = root / "raced.zarr"
    first, second = zygote.start(args(out), pause_s=5), zygote.start(args(out), pause_s=5)
    codes = sorted([zygote.wait(first), zygote.wait(second)])
    assert codes in ([0, 0], [0, 1]), codes  # the second waited and found it complete, or was refused (one line)
    assert shard_files(out) == refs[0] and not FeatureStore.open(out).verify()
    assert sorted(p.name for p in root.iterdir() if "raced" in p.name) == ["raced.zarr"]
    before = snapshot(out)
    pid = zygote.start(args(out))  # a third writer on the finished store: resumes, rewrites nothing
    assert zygote.wait(pid) == 0 and snapshot(out) == before
