"""dra_pipeline.fetch against a local HTTP server (DRA_MIRROR points every URL at it): resume, retry, checksums,
offline mode, safe unpacking and the progress bar. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline import fetch
from dra_pipeline.data import open_source
from dra_pipeline.errors import DraError
from dra_pipeline.hashing import file_md5, file_sha256
from tests import fixtures
from tests.http_server import FileServer

BLOB_URL = "https://files.example.org/weights/blob.bin"
BLOB_PATH = "/weights/blob.bin"


@pytest.fixture
def blob():
    return np.random.default_rng(7).integers(0, 256, size=200_000, dtype=np.uint8).tobytes()


def blob_remote(body: bytes | None = None, **digests) -> fetch.Remote:
    if body is not None:
        digests.setdefault("sha256", hashlib.sha256(body).hexdigest())
    return fetch.Remote(BLOB_URL, "blob.bin", **digests)


def ranges(server: FileServer) -> list[str | None]:
    return [r.range for r in server.requests]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", data: bytes = b"x"):
    """A (TarInfo, data) pair for make_tar; data is None for anything but a regular file."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, data if kind == tarfile.REGTYPE else None


# ---------------------------------------------------------------------------------------------------------------------
# the CIFAR-10 archive, end to end


def test_cifar10_archive_downloads_verifies_and_unpacks_to_a_readable_dataset(server, tmp_path, cifar_images):
    images, labels = cifar_images
    src = tmp_path / "src"
    fixtures.write_cifar10(src / "cifar-10-batches-py", images, labels)
    (src / "cifar-10-batches-py" / "readme.html").write_text("<html>CIFAR-10</html>\n")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    remote = dataclasses.replace(fetch.CIFAR10, md5=file_md5(archive), size=archive.stat().st_size)
    server.serve("/~kriz/cifar-10-python.tar.gz", archive.read_bytes())

    into = tmp_path / "data"
    folder = fetch.fetch_archive(remote, into, expect="cifar-10-batches-py", quiet=True)

    assert folder == into.absolute() / "cifar-10-batches-py"
    assert files_under(folder) == files_under(src / "cifar-10-batches-py")
    assert sorted(p.name for p in into.iterdir()) == ["cifar-10-batches-py"]  # archive, .part, staging all gone
    assert [r.path for r in server.requests] == ["/~kriz/cifar-10-python.tar.gz"]
    source = open_source("cifar10", data_dir=into)
    np.testing.assert_array_equal(source.read(np.arange(len(images))), images)
    np.testing.assert_array_equal(source.labels, labels)
    # a second call finds the folder and asks the server nothing
    assert fetch.fetch_archive(remote, into, expect="cifar-10-batches-py", quiet=True) == folder
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------------------------------
# resume and retry


def test_connection_dropped_mid_body_resumes_with_a_range_request(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob, cut_after=70_000)
    dest = fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    assert ranges(server) == [None, "bytes=70000-"]
    assert file_sha256(dest) == hashlib.sha256(blob).hexdigest()
    assert not (tmp_path / "blob.bin.part").exists()


def test_part_left_by_an_earlier_run_is_resumed(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob)
    half = len(blob) // 2
    (tmp_path / "blob.bin.part").write_bytes(blob[:half])
    dest = fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    assert ranges(server) == [f"bytes={half}-"]
    assert dest.read_bytes() == blob


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob, ignore_range=True)
    half = len(blob) // 2
    (tmp_path / "blob.bin.part").write_bytes(b"\0" * half)  # appending the full body to this would be wrong
    dest = fetch.download(blob_remote(), tmp_path / "blob.bin", quiet=True)  # no digest: the bytes themselves tell
    assert ranges(server) == [f"bytes={half}-"]
    assert dest.read_bytes() == blob


def test_complete_part_answered_416_is_verified_and_kept(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob)
    (tmp_path / "blob.bin.part").write_bytes(blob)
    dest = fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    assert ranges(server) == [f"bytes={len(blob)}-"]
    assert dest.read_bytes() == blob


def test_repeated_drops_keep_the_part_and_a_rerun_finishes_it(server, tmp_path, blob):
    route = server.serve(BLOB_PATH, blob, cut_after=10_000, cuts=fetch.RETRIES + 1)
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    message = str(e.value)
    assert "\n" not in message and "kept" in message and "rerunning resumes" in message
    assert str(tmp_path / "blob.bin.part") in message
    assert len(server.requests) == fetch.RETRIES + 1
    assert (tmp_path / "blob.bin.part").read_bytes() == blob[: 10_000 * (fetch.RETRIES + 1)]
    assert route.cuts == 0
    dest = fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    assert dest.read_bytes() == blob
    assert ranges(server)[-1] == f"bytes={10_000 * (fetch.RETRIES + 1)}-"


# ---------------------------------------------------------------------------------------------------------------------
# checksums, errors, offline mode, existing files


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_wrong_checksum_removes_the_download_and_names_both_digests(server, tmp_path, blob, algorithm):
    server.serve(BLOB_PATH, blob)
    wrong = "0" * len(hashlib.new(algorithm).hexdigest())
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(**{algorithm: wrong}), tmp_path / "blob.bin", quiet=True)
    message = str(e.value)
    assert wrong in message and hashlib.new(algorithm, blob).hexdigest() in message and "removed" in message
    assert not (tmp_path / "blob.bin.part").exists()
    assert not (tmp_path / "blob.bin").exists()


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_one_line_with_status_and_url(server, tmp_path, status):
    server.serve(BLOB_PATH, status=status)
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(), tmp_path / "blob.bin", quiet=True)
    message = str(e.value)
    assert str(status) in message and server.url(BLOB_PATH) in message and BLOB_URL in message
    assert "\n" not in message
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_unreachable_host_is_one_line(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DRA_MIRROR", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(), tmp_path / "blob.bin", quiet=True)
    assert "http://127.0.0.1:9/weights/blob.bin" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_names_the_url_and_where_to_put_the_file(server, tmp_path, monkeypatch, blob, value):
    server.serve(BLOB_PATH, blob)
    monkeypatch.setenv("DRA_OFFLINE", value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(blob), Path("sub/blob.bin"), quiet=True)
    message = str(e.value)
    assert BLOB_URL in message and f"put the file at {tmp_path / 'sub' / 'blob.bin'} " in message
    assert "\n" not in message
    assert server.requests == []
    assert not (tmp_path / "sub").exists()


def test_existing_file_is_reused_without_a_request(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob)
    (tmp_path / "blob.bin").write_bytes(blob)
    assert fetch.download(blob_remote(blob, md5=hashlib.md5(blob).hexdigest()), tmp_path / "blob.bin") == (
        tmp_path / "blob.bin"
    )
    assert server.requests == []


def test_existing_mismatching_file_is_an_error_and_is_kept(server, tmp_path, blob):
    server.serve(BLOB_PATH, blob)
    (tmp_path / "blob.bin").write_bytes(b"my own file")
    with pytest.raises(DraError) as e:
        fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    message = str(e.value)
    assert str(tmp_path / "blob.bin") in message and "delete it" in message and "\n" not in message
    assert (tmp_path / "blob.bin").read_bytes() == b"my own file"
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------------------------
# unpacking


@pytest.mark.parametrize(
    "name, kind, linkname",
    [
        ("cifar-10-batches-py/../evil.txt", tarfile.REGTYPE, ""),
        ("{tmp}/evil.txt", tarfile.REGTYPE, ""),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE, "../../evil.txt"),
        ("cifar-10-batches-py/hard", tarfile.LNKTYPE, "cifar-10-batches-py/data_batch_1"),
        ("cifar-10-batches-py/fifo", tarfile.FIFOTYPE, ""),
        ("cifar-10-batches-py/dev", tarfile.CHRTYPE, ""),
        ("elsewhere/evil.txt", tarfile.REGTYPE, ""),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "fifo", "device", "outside"],
)
def test_unsafe_archive_member_is_refused_before_anything_is_written(tmp_path, name, kind, linkname):
    name = name.format(tmp=tmp_path)  # an absolute path that, if honoured, would land where the test looks
    (tmp_path / "archives").mkdir()
    # a good member first: a check made member by member would already have written it
    archive = make_tar(
        tmp_path / "archives" / "bad.tar.gz",
        [
            member("cifar-10-batches-py", tarfile.DIRTYPE),
            member("cifar-10-batches-py/data_batch_1"),
            member(name, kind, linkname),
        ],
    )
    into = tmp_path / "work" / "into"
    with pytest.raises(DraError) as e:
        fetch.unpack_tar(archive, into, expect="cifar-10-batches-py")
    assert repr(name) in str(e.value) and "\n" not in str(e.value)
    assert list(into.iterdir()) == []  # no final folder, no staging folder
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "archives",
        "archives/bad.tar.gz",
        "work",
        "work/into",
    ]


def test_unpack_leaves_an_existing_folder_alone(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [member("cifar-10-batches-py/data_batch_1", data=b"new")])
    (tmp_path / "into" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "into" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"old")
    folder = fetch.unpack_tar(archive, tmp_path / "into", expect="cifar-10-batches-py")
    assert (folder / "data_batch_1").read_bytes() == b"old"


# ---------------------------------------------------------------------------------------------------------------------
# progress bar, environment


def test_progress_bar_names_the_file_on_stderr(server, tmp_path, blob, capsys):
    server.serve(BLOB_PATH, blob)
    fetch.download(blob_remote(blob), tmp_path / "blob.bin")
    captured = capsys.readouterr()
    assert "blob.bin" in captured.err and captured.out == ""


def test_tqdm_disable_hides_the_progress_bar(server, tmp_path, blob, capsys, monkeypatch):
    server.serve(BLOB_PATH, blob)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    fetch.download(blob_remote(blob), tmp_path / "blob.bin")
    assert capsys.readouterr() == ("", "")


def test_quiet_hides_the_progress_bar(server, tmp_path, blob, capsys):
    server.serve(BLOB_PATH, blob)
    fetch.download(blob_remote(blob), tmp_path / "blob.bin", quiet=True)
    assert capsys.readouterr() == ("", "")


def test_mirror_replaces_scheme_and_host_and_keeps_path_and_query(monkeypatch):
    monkeypatch.delenv("DRA_MIRROR", raising=False)
    assert fetch.resolve_url("https://a.org/x/y.pkl?v=2") == "https://a.org/x/y.pkl?v=2"
    monkeypatch.setenv("DRA_MIRROR", "http://127.0.0.1:8123")
    assert fetch.resolve_url("https://a.org/x/y.pkl?v=2") == "http://127.0.0.1:8123/x/y.pkl?v=2"
    monkeypatch.setenv("DRA_MIRROR", "http://mirror.lan/dra/")
    assert fetch.resolve_url("https://a.org/x/y.pkl") == "http://mirror.lan/dra/x/y.pkl"
    monkeypatch.setenv("DRA_MIRROR", "mirror.lan")
    with pytest.raises(DraError):
        fetch.resolve_url("https://a.org/x/y.pkl")


def test_home_and_offline_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DRA_HOME", str(tmp_path))
    assert fetch.checkpoints_dir() == tmp_path / "checkpoints"
    monkeypatch.delenv("DRA_HOME")
    assert fetch.home() == Path(os.path.expanduser("~/.cache/dra-pipeline"))
    monkeypatch.setenv("DRA_OFFLINE", "0")
    assert not fetch.offline()
    monkeypatch.setenv("DRA_OFFLINE", "True")
    assert fetch.offline()


def test_known_remotes():
    edm = fetch.edm_remote("edm-cifar10-32x32-cond-vp")
    assert edm.url == "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-cond-vp.pkl"
    assert edm.filename == "edm-cifar10-32x32-cond-vp.pkl" and edm.md5 is None and edm.sha256 is None
    assert fetch.CIFAR100.filename == "cifar-100-python.tar.gz" and fetch.CIFAR100.url.endswith(
        "/~kriz/" + "cifar-100-python.tar.gz"
    )
    with pytest.raises(DraError):
        fetch.Remote("https://a.org/x", "../x")
