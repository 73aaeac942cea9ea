"""Downloads where users meet them, against the local server (the `server` fixture mirrors every URL to it): the
named CIFAR sources fetch the official tarball into the data folder, EDM teachers their pickle into
$DRA_HOME/checkpoints, and `extract --teacher edm-cifar10` runs from an empty folder. tests/test_fetch.py covers the
download module itself."""

import dataclasses
import hashlib
import shutil
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from dra_pipeline import fetch
from dra_pipeline.cache import FeatureStore
from dra_pipeline.cli import main
from dra_pipeline.data import NAMED, open_source
from dra_pipeline.errors import DraError
from dra_pipeline.teachers import create_teacher, teacher_from_provenance
from tests import published
from tests.test_cli import assert_one_line_error
from tests.test_fetch import files_under

EDM_URL = fetch.edm_remote("edm-cifar10-32x32-cond-vp").url
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder, cwd, holding DRA_HOME; no DRA_DATA_DIR."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DRA_HOME", str(work / "home"))
    monkeypatch.delenv("DRA_DATA_DIR", raising=False)
    return work


@pytest.fixture
def cifar10(tmp_path):
    """A tiny cifar-10-python.tar.gz in the official layout (100 train, 20 test images) and its source folder."""
    return published.cifar10_tarball(tmp_path / "cifar-10-python.tar.gz")


def source_folder(archive):
    return archive.parent / f".{archive.name}.src" / "cifar-10-batches-py"


# ---------------------------------------------------------------------------------------------------------------------
# named sources


@pytest.mark.parametrize("where", ["default", "DRA_DATA_DIR", "--data-dir"])
def test_cifar10_is_downloaded_verified_and_unpacked_into_the_data_folder(server, work, cifar10, monkeypatch, where):
    published.pin(monkeypatch, "cifar10", cifar10)
    server.serve(published.CIFAR10_PATH, cifar10.read_bytes())
    root = {"default": work / "data", "DRA_DATA_DIR": work / "mine", "--data-dir": work / "opt"}[where]
    data_dir = None
    if where == "DRA_DATA_DIR":
        monkeypatch.setenv("DRA_DATA_DIR", str(root))
    elif where == "--data-dir":
        data_dir = root / "cifar-10-batches-py"  # the dataset's own folder, absent: the download goes beside it

    train, test = open_source("cifar10", data_dir=data_dir), open_source("cifar10:test", data_dir=data_dir)
    assert train.spec.path == test.spec.path == str(root / "cifar-10-batches-py")
    assert (len(train), len(test)) == (100, 20)
    assert files_under(root / "cifar-10-batches-py") == files_under(source_folder(cifar10))
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # archive, .part, staging gone
    assert [r.path for r in server.requests] == [published.CIFAR10_PATH]  # one download serves both splits


def test_cifar100_is_downloaded_too(server, work, tmp_path, monkeypatch):
    archive = published.cifar100_tarball(tmp_path / "cifar-100-python.tar.gz")
    published.pin(monkeypatch, "cifar100", archive)
    server.serve(published.CIFAR100_PATH, archive.read_bytes())
    source = open_source("cifar100:test")
    assert source.spec.path == str(work / "data" / "cifar-100-python") and source.num_classes == 100
    np.testing.assert_array_equal(source.labels, np.arange(40))


def test_an_interrupted_download_resumes_to_the_same_bytes(server, work, cifar10, monkeypatch):
    published.pin(monkeypatch, "cifar10", cifar10)
    cut = cifar10.stat().st_size // 3
    server.serve(published.CIFAR10_PATH, cifar10.read_bytes(), cut_after=cut)  # the first response stops there
    source = open_source("cifar10")
    assert [r.range for r in server.requests] == [None, f"bytes={cut}-"]
    assert files_under(work / "data" / "cifar-10-batches-py") == files_under(source_folder(cifar10))
    assert len(source) == 100


def test_a_wrong_checksum_is_refused_and_the_file_removed(server, work, cifar10, monkeypatch):
    published.pin(monkeypatch, "cifar10", cifar10, md5="0" * 32)  # the size matches, the digest does not
    server.serve(published.CIFAR10_PATH, cifar10.read_bytes())
    with pytest.raises(DraError) as e:
        open_source("cifar10")
    message = str(e.value)
    assert "\n" not in message and "md5" in message and "0" * 32 in message and "removed" in message
    assert list((work / "data").iterdir()) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_are_one_line(server, work, status, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")  # the output holds the error alone, not the progress bar beside it
    server.serve(published.CIFAR10_PATH, status=status)
    result = CliRunner().invoke(main, ["data", "info", "cifar10"])
    assert_one_line_error(result, f"HTTP {status}")
    assert fetch.CIFAR10.url in result.output and server.url(published.CIFAR10_PATH) in result.output


def test_offline_names_the_url_and_where_to_put_the_file(server, work, monkeypatch):
    monkeypatch.setenv("DRA_OFFLINE", "1")
    result = CliRunner().invoke(main, ["data", "info", "cifar10"])
    assert_one_line_error(result, fetch.CIFAR10.url)
    assert f"put the file at {work / 'data' / 'cifar-10-python.tar.gz'} " in result.output
    assert server.requests == []


def test_an_archive_member_escaping_the_folder_is_refused(server, work, cifar10, tmp_path, monkeypatch):
    evil = tarfile.TarInfo("cifar-10-batches-py/../../evil.txt")
    bad = published.cifar10_tarball(tmp_path / "bad" / "cifar-10-python.tar.gz", extra=[(evil, b"gotcha")])
    published.pin(monkeypatch, "cifar10", bad)
    server.serve(published.CIFAR10_PATH, bad.read_bytes())
    with pytest.raises(DraError, match=r"refusing member 'cifar-10-batches-py/\.\./\.\./evil\.txt'"):
        open_source("cifar10")
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert not (work / "data" / "cifar-10-batches-py").exists()


def test_an_incomplete_dataset_folder_is_kept_and_named(server, work):
    (work / "data" / "cifar-10-batches-py").mkdir(parents=True)  # e.g. a half-deleted folder: the user's files
    with pytest.raises(DraError, match="cifar-10-batches-py holds no data_batch_1; delete the folder to download"):
        open_source("cifar10")
    assert server.requests == []


def test_fashion_mnist_is_never_downloaded(server, work, monkeypatch):
    absent = dataclasses.replace(NAMED["fashion-mnist"], default_dir=work / "absent")  # as if the package were not in
    monkeypatch.setitem(NAMED, "fashion-mnist", absent)
    with pytest.raises(DraError, match="apt-get install dataset-fashion-mnist"):
        open_source("fashion-mnist")
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------------------------
# EDM teachers


def test_edm_teacher_downloads_its_pickle_once_and_checkpoint_wins(server, work, tmp_path):
    body = published.edm_pickle(tmp_path / "edm.pkl").read_bytes()
    server.serve(published.EDM_PATH, body)
    teacher = create_teacher("edm-cifar10")
    cached = work / "home" / "checkpoints" / "edm-cifar10-32x32-cond-vp.pkl"
    assert cached.read_bytes() == body
    assert teacher.checkpoint_sha256 == hashlib.sha256(body).hexdigest() and teacher.checkpoint_path == EDM_URL
    assert teacher.layer == "dec.8x8_block4"
    again = create_teacher("edm-cifar10")
    assert again.checkpoint_sha256 == teacher.checkpoint_sha256 and len(server.requests) == 1  # from the cache
    shutil.copy(tmp_path / "edm.pkl", tmp_path / "mine.pkl")
    mine = create_teacher("edm-cifar10", checkpoint=tmp_path / "mine.pkl")
    assert mine.checkpoint_path == str(tmp_path / "mine.pkl") and len(server.requests) == 1


def test_edm_offline_names_the_url_and_path_and_cifar100_has_no_download(server, work, monkeypatch):
    with pytest.raises(DraError, match="checkpoints/edm-cifar100-32x32-cond-vp.pkl not found.*--checkpoint"):
        create_teacher("edm-cifar100")
    monkeypatch.setenv("DRA_OFFLINE", "1")
    with pytest.raises(DraError) as e:
        create_teacher("edm-cifar10-uncond")
    message = str(e.value)
    assert fetch.edm_remote("edm-cifar10-32x32-uncond-vp").url in message and "\n" not in message
    assert f"put the file at {work / 'home' / 'checkpoints' / 'edm-cifar10-32x32-uncond-vp.pkl'} " in message
    assert server.requests == []


def test_extract_edm_cifar10_from_an_empty_folder(server, work, tmp_path, monkeypatch):
    files = published.serve_cifar10_and_edm(server, monkeypatch, tmp_path / "published")
    args = ["extract", "--teacher", "edm-cifar10", "--n", "64", "--batch-size", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(work / "cache" / "cifar10.zarr")
    assert store.complete and store.layout.rows == 64
    sha256 = hashlib.sha256(files[published.EDM_PATH]).hexdigest()
    assert store.provenance["checkpoint_sha256"] == sha256 and store.provenance["checkpoint"] == EDM_URL
    assert store.provenance["layer"] == "dec.8x8_block4"
    assert store.sources[0]["path"] == str(work / "data" / "cifar-10-batches-py")
    assert sorted(r.path for r in server.requests) == sorted(files)
    # the store's teacher is rebuilt from the cached pickle, its hash checked, nothing downloaded again
    assert teacher_from_provenance(store.provenance).checkpoint_sha256 == sha256
    assert len(server.requests) == 2
