"""Issue 17, items 1-9: nothing a user has is destroyed, corruption is caught and repaired, identities are checked.

Each test reproduces one defect and asserts one clear line, the exit code and that every file that existed before
is byte-identical afterwards (or, for repairs, the right result).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import dra_pipeline.cache.store as store_module
from dra_pipeline.cache import FeatureStore
from dra_pipeline.data import open_source
from tests import fixtures
from tests.hostile import (
    changes,
    error_line,
    extract_args,
    flip_byte,
    fmnist,
    invoke,
    shard_files,
    snapshot,
    write_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    *("--set", "data.validation=16", "--set", "data.epoch_images=32", "--set", "train.batch_size=16"),
    *("--set", "attack.steps=1", "--set", "attack.val_steps=1", "--set", "dra.hidden=32"),
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data(tmp_path):
    return fmnist(tmp_path)


def extracted(data, out, *extra):
    result = invoke(*extract_args(data, out, *extra))
    assert result.exit_code == 0, result.output
    return out


def train_args(data, out, features, *extra, epochs=1):
    run = ["train", "--features", features, "--config", "fmnist-cpu", "--data-dir", data, "--out", out]
    return [*run, *FAST, "--set", f"train.epochs={epochs}", *extra]


# ---------------------------------------------------------------------------------------------------- item 1
def refusal_targets(tmp_path, data):
    """--out values that name something evaluate does not own, each with the message fragment expected."""
    extracted(data, tmp_path / "s.zarr")
    (tmp_path / "notes.json").write_text('{"mine": true}\n')
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "r.md").write_text("# my notes\n")
    return [
        (tmp_path / "run" / "last.pt", "a report is a .json file"),
        (tmp_path / "run" / "best-ema.pt", "a report is a .json file"),
        (tmp_path / "s.zarr", "is a directory"),
        (tmp_path / "s.zarr" / "zarr.json", "did not write as a report"),
        (tmp_path / "notes.json", "did not write as a report"),
        (tmp_path / "folder.json", "is a directory"),
        (tmp_path / "r.json", "r.md exists and is a file this tool did not write as a report"),
    ]


def test_evaluate_out_refuses_an_existing_checkpoint(tmp_path, data):
    best = write_checkpoint(tmp_path / "run" / "best-ema.pt")
    (tmp_path / "run" / "last.pt").write_bytes(best.read_bytes())
    common = ["evaluate", "--checkpoint", best, "--n", 4, "--attack", "fgsm", "--data-dir", data, "--device", "cpu"]
    for out, message in refusal_targets(tmp_path, data):
        before = snapshot(tmp_path)
        line = error_line(invoke(*common, "--out", out))
        assert message in line
        assert not changes(before, snapshot(tmp_path)), out
    ok = invoke(*common, "--out", tmp_path / "reports" / "r.json")
    assert ok.exit_code == 0, ok.output
    again = invoke(*common, "--out", tmp_path / "reports" / "r.json")  # an earlier report of this tool is replaced
    assert again.exit_code == 0, again.output


# ---------------------------------------------------------------------------------------------------- item 2
def test_extract_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path, data):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.txt").write_text("x\n")
    before = snapshot(tmp_path)
    for extra in ((), ("--overwrite",)):
        line = error_line(invoke(*extract_args(data, tmp_path / "d", "--n", 32, *extra)))
        assert "exists and is not a feature store" in line and "--overwrite" not in line
        assert not changes(before, snapshot(tmp_path))


# ---------------------------------------------------------------------------------------------------- item 3
@pytest.mark.parametrize(
    "bad, message",
    [
        (("--views", "bogus"), "unknown view(s) bogus"),
        (("--sigma", "nan"), "--sigma must be a positive finite noise std"),
        (("--sigma", "-1"), "--sigma must be a positive finite noise std"),
        (("--batch-size", "-1"), "'--batch-size': -1 is not in the range x>=1"),
        (("--n", "-5"), "'--n': -5 is not in the range x>=1"),
        (("--layer", "no.such.layer"), "has no layer 'no.such.layer'"),
    ],
)
def test_extract_overwrite_keeps_the_old_store_when_the_new_settings_are_bad(tmp_path, data, bad, message):
    extracted(data, tmp_path / "s.zarr")
    before = snapshot(tmp_path)
    assert message in error_line(invoke(*extract_args(data, tmp_path / "s.zarr", "--overwrite", "--seed", 1, *bad)))
    assert not changes(before, snapshot(tmp_path))


def test_extract_overwrite_replaces_the_old_store_only_once_the_new_one_is_complete(tmp_path, data, monkeypatch):
    old = extracted(data, tmp_path / "s.zarr")
    reference = extracted(data, tmp_path / "ref.zarr", "--seed", 1)
    before = snapshot(old)
    write_shard, calls = FeatureStore.write_shard, []

    def dies_after_two(self, shard, features):
        if len(calls) == 2:
            raise KeyboardInterrupt  # a Ctrl-C in the middle of the replacement
        calls.append(shard)
        write_shard(self, shard, features)

    monkeypatch.setattr(FeatureStore, "write_shard", dies_after_two)
    interrupted = invoke(*extract_args(data, old, "--overwrite", "--seed", 1))
    assert interrupted.exit_code != 0
    assert not changes(before, snapshot(old)), "the old store is untouched while its replacement is unfinished"
    assert FeatureStore.open(old).complete and FeatureStore.open(old).provenance["seed"] == 0
    monkeypatch.setattr(FeatureStore, "write_shard", write_shard)
    original = invoke(*extract_args(data, old))  # the old settings: the old store, and a word on the replacement
    assert original.exit_code == 0 and ".s.zarr.overwrite holds an unfinished replacement" in original.output
    resumed = invoke(*extract_args(data, old, "--overwrite", "--seed", 1))
    assert resumed.exit_code == 0 and "wrote 1 shards, complete" in resumed.output, resumed.output
    assert shard_files(old) == shard_files(reference)  # the replacement resumed, byte-identical to a clean run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fashion-mnist", "ref.zarr", "s.zarr"]


# ---------------------------------------------------------------------------------------------------- item 4
def _spawn_lock_holder(path: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from dra_pipeline.lock import exclusive\n"
        "with exclusive(sys.argv[1], wait_s=0):\n    print('held', flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_waits_then_refuses_and_a_dead_owners_lock_is_taken_over(tmp_path, data, monkeypatch):
    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.5)
    out = tmp_path / "s.zarr"
    holder = _spawn_lock_holder(out)
    try:
        before = snapshot(tmp_path)
        start = time.monotonic()
        line = error_line(invoke(*extract_args(data, out)))
        assert f"is in use by another store writer (pid {holder.pid} on {socket.gethostname()}" in line
        assert time.monotonic() - start >= 0.5 and not changes(before, snapshot(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".s.zarr.lock").exists(), "a killed owner leaves its lock file behind"
    taken_over = invoke(*extract_args(data, out))
    assert taken_over.exit_code == 0 and FeatureStore.open(out).complete, taken_over.output
    assert not (tmp_path / ".s.zarr.lock").exists()


def test_a_second_training_of_one_run_directory_is_refused(tmp_path, data, monkeypatch):
    import dra_pipeline.jobs.train as train_job

    monkeypatch.setattr(train_job, "RUN_LOCK_WAIT_S", 0.2)
    store = extracted(data, tmp_path / "s.zarr")
    run = tmp_path / "run"
    holder = _spawn_lock_holder(run)  # a training that is still running there
    try:
        before = snapshot(tmp_path)
        line = error_line(invoke(*train_args(data, run, store)))
        assert f"is in use by another training run (pid {holder.pid}" in line
        assert not changes(before, snapshot(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert invoke(*train_args(data, run, store)).exit_code == 0 and (run / "best-ema.pt").is_file()
    assert not (tmp_path / ".run.lock").exists()


def test_creation_never_deletes_the_staging_folder_of_a_live_process(tmp_path, data):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    live = tmp_path / f".s.zarr.creating-{host}-{sleeper.pid}-0badc0de"
    dead = tmp_path / f".s.zarr.creating-{host}-{int(finished.stdout)}-0badc0de"
    other_host = tmp_path / ".s.zarr.creating-elsewhere.example-1-0badc0de"
    try:
        for folder in (live, dead, other_host):
            folder.mkdir()
            (folder / "zarr.json").write_text("{}")
        extracted(data, tmp_path / "s.zarr")
        assert live.exists() and other_host.exists(), "another live (or unknowable) creator's folder stays"
        assert not dead.exists(), "a dead creator's staging folder is cleaned up"
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------------------------------------------- item 5
def test_rerunning_extract_rewrites_a_truncated_or_bit_flipped_shard(tmp_path, data):
    out = extracted(data, tmp_path / "s.zarr")
    good = shard_files(out)
    flip_byte(out / "features" / "c" / "0" / "0" / "0", 100)  # a value
    shard = out / "features" / "c" / "2" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:50])  # truncated
    verify = invoke("cache", "verify", out)
    assert verify.exit_code == 1 and "2 of 3 shards failed verification" in verify.output
    rerun = invoke(*extract_args(data, out))
    assert rerun.exit_code == 0 and "wrote 2 shards, complete (2 damaged shards rewritten)" in rerun.output
    assert shard_files(out) == good
    assert invoke("cache", "verify", out).exit_code == 0


# ---------------------------------------------------------------------------------------------------- item 6
def test_cache_verify_catches_a_flipped_index_checksum_and_flipped_labels(tmp_path, data):
    out = extracted(data, tmp_path / "s.zarr")
    good = snapshot(out)
    shard = out / "features" / "c" / "1" / "0" / "0"
    flip_byte(shard, shard.stat().st_size - 1)  # the sharding index's crc32c: zarr-python cannot read the shard
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        zarr.open_array(out / "features", mode="r")[16:32]
    labels = next((out / "labels" / "c").iterdir())
    flip_byte(labels, 3)
    verify = invoke("cache", "verify", out)
    assert verify.exit_code == 1 and "the labels and 1 of 3 shards failed verification" in verify.output
    assert "shard 1 (rows 16-31): its file differs from its completion record (corrupt)" in verify.output
    assert "labels/ differ from the labels hashed at creation" in verify.output
    rerun = invoke(*extract_args(data, out))
    assert rerun.exit_code == 0 and "(1 damaged shards rewritten)" in rerun.output, rerun.output
    assert snapshot(out) == good
    assert "ok: 3 shards and the labels match" in invoke("cache", "verify", out).output


# ---------------------------------------------------------------------------------------------------- item 7
def test_the_source_fingerprint_covers_every_image(tmp_path):
    images = fixtures.random_images(4096, 8, 8, 3, seed=1)
    np.savez(tmp_path / "a.npz", image=images, label=np.arange(4096) % 10)
    before = open_source(str(tmp_path / "a.npz")).fingerprint()
    images[5] = 255  # whiten image 5: not one of 32 evenly spaced samples
    np.savez(tmp_path / "a.npz", image=images, label=np.arange(4096) % 10)
    assert open_source(str(tmp_path / "a.npz")).fingerprint() != before


def test_a_folder_fingerprint_reuses_an_unchanged_digest_and_sees_an_edited_file(tmp_path, monkeypatch):
    import dra_pipeline.hashing as hashing

    root = tmp_path / "images"
    fixtures.write_folder(root, fixtures.random_images(6, 8, 8, 3, seed=3), np.arange(6) % 2, ["a", "b"])
    old = time.time() - 100
    for f in root.rglob("*.png"):
        os.utime(f, (old, old))  # older than the racy window: the digest may be remembered
    first = open_source(str(root)).fingerprint()
    folder_sha256 = hashing.folder_sha256
    monkeypatch.setattr(hashing, "folder_sha256", lambda *a: pytest.fail("an unchanged folder was hashed again"))
    assert open_source(str(root)).fingerprint() == first
    monkeypatch.setattr(hashing, "folder_sha256", folder_sha256)
    edited = next(root.rglob("*.png"))
    fixtures.write_folder(tmp_path / "other", fixtures.random_images(1, 8, 8, 3, seed=9), np.zeros(1), ["a"])
    edited.write_bytes(next((tmp_path / "other").rglob("*.png")).read_bytes())
    assert open_source(str(root)).fingerprint() != first


def test_extract_and_train_refuse_a_store_whose_source_changed_in_one_image(tmp_path, data):
    out = extracted(data, tmp_path / "s.zarr")
    images = fixtures.random_images(48, 28, 28, 1, seed=1)[..., 0]
    images[5] = 255
    fixtures.write_idx(data / "train-images-idx3-ubyte.gz", images)
    before = snapshot(tmp_path)
    assert "sources[0].fingerprint" in error_line(invoke(*extract_args(data, out)))
    assert "sources[0].fingerprint" in error_line(invoke(*train_args(data, tmp_path / "run", out, "--lambda", 1)))
    assert not changes(before, snapshot(tmp_path))


def test_a_store_of_the_older_format_is_refused_with_one_line(tmp_path, data):
    out = extracted(data, tmp_path / "s.zarr")
    meta = json.loads((out / "zarr.json").read_text())
    meta["attributes"]["dra"]["format_version"] = 1
    (out / "zarr.json").write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    for args in (("cache", "info", out), extract_args(data, out), train_args(data, tmp_path / "run", out)):
        line = error_line(invoke(*args))
        assert "made by an older version of dra-pipeline (store format 1" in line and "re-extract" in line
    assert not changes(before, snapshot(tmp_path))
    assert invoke(*extract_args(data, out, "--overwrite")).exit_code == 0  # --overwrite replaces it
    assert FeatureStore.open(out).complete


# ---------------------------------------------------------------------------------------------------- item 8
def test_a_resumed_run_refuses_a_store_re_extracted_between_epochs(tmp_path, data):
    store = extracted(data, tmp_path / "s.zarr")
    run = tmp_path / "run"
    args = train_args(data, run, store, "--lambda", 0.5, epochs=1)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    extracted(data, store, "--overwrite", "--seed", 1, "--sigma", 0.2)  # same path, other features
    before = snapshot(run)
    line = error_line(invoke(*args))  # the same command: it would resume the run
    assert f"{run} was trained on a store with identity" in line and "re-extracted or replaced since" in line
    assert not changes(before, snapshot(run))


# ---------------------------------------------------------------------------------------------------- item 9
def test_train_refuses_a_store_of_another_dataset_before_creating_the_run(tmp_path, data):
    cifar = tmp_path / "cifar"
    fixtures.write_cifar10(cifar, fixtures.random_images(40, 32, 32, 3, seed=2), np.arange(40) % 10)
    cifar_store = tmp_path / "c.zarr"
    args = ["extract", "--teacher", "tiny", "--data", "cifar10", "--data-dir", cifar, "--out", cifar_store]
    assert invoke(*args, "--rows-per-shard", 16, "--device", "cpu").exit_code == 0
    fmnist_store = extracted(data, tmp_path / "f.zarr")
    before = snapshot(tmp_path)
    line = error_line(invoke(*train_args(data, tmp_path / "run", cifar_store)))
    assert "data.dataset is 'fashion-mnist' but" in line and "extracted from cifar10:train" in line
    line = error_line(invoke(*train_args(data, tmp_path / "run", fmnist_store, "--set", "data.dataset=cifar10")))
    assert "data.dataset is 'cifar10' but" in line and "--set data.dataset=fashion-mnist" in line
    assert not changes(before, snapshot(tmp_path)) and not (tmp_path / "run").exists()


def test_a_read_only_output_folder_is_one_line(tmp_path, data, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders: let the permission check see it as a user would
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    try:
        before = snapshot(tmp_path)
        assert "the folder" in error_line(invoke(*extract_args(data, locked / "s.zarr")))
        assert "is not writable" in error_line(invoke(*train_args(data, locked / "run", tmp_path / "none.zarr")))
        assert not changes(before, snapshot(tmp_path))
    finally:
        locked.chmod(0o755)


def test_no_hidden_files_are_left_by_a_normal_extraction(tmp_path, data):
    extracted(data, tmp_path / "s.zarr")
    assert sorted(os.listdir(tmp_path)) == ["fashion-mnist", "s.zarr"]


def test_a_stats_line_cut_short_by_a_kill_is_skipped_and_the_next_record_starts_its_own_line(tmp_path):
    from dra_pipeline.run_dir import RunDir

    (tmp_path / "run").mkdir()
    run = RunDir(tmp_path / "run")
    record = {"loss": 0.5, "align": 0.1, "clean_acc": 0.6, "adv_acc": 0.4, "val_clean": 0.7, "val_robust": 0.5}
    run.log({"epoch": 1, **record, "lr": 0.01})
    with open(run.path / "stats.jsonl", "a") as f:
        f.write('{"epoch": 2, "lo')  # killed mid-append
    assert [r["epoch"] for r in run.records()] == [1]
    run.reconcile_stats({"epoch": 2, **record, "lr": 0.02})  # the record saved inside last.pt
    assert [r["epoch"] for r in run.records()] == [1, 2]
