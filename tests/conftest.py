import socket

import numpy as np
import pytest
import torch

from dra_pipeline import fetch
from tests import fixtures
from tests.http_server import FileServer


@pytest.fixture(autouse=True)
def fingerprint_cache(tmp_path_factory, monkeypatch):
    """Folder fingerprints are remembered in a temporary folder of the test run, never in the user's home."""
    monkeypatch.setenv("DRA_FINGERPRINT_CACHE", str(tmp_path_factory.getbasetemp() / "fingerprint-cache"))


@pytest.fixture
def fmnist_dir(tmp_path):
    """A tiny Fashion-MNIST folder in the Debian layout; yields (dir, arrays)."""
    d = tmp_path / "fashion-mnist"
    return d, fixtures.write_fashion_mnist(d)


@pytest.fixture
def cifar_images():
    images = fixtures.random_images(25, 32, 32, 3, seed=3)
    labels = np.arange(25) % 10
    return images, labels


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: OpenMP hand-offs would dominate them, and two threads on a
    2-core machine that runs other jobs are many times slower (modules opt in with pytestmark)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path_factory):
    """Every test runs offline, with empty caches: a dataset or weights file it does not provide is an error, never a
    download or a file of the machine's own caches. The `server` fixture lifts DRA_OFFLINE for its local server;
    hub tests lay out their own cache."""
    empty = tmp_path_factory.getbasetemp() / "empty-caches"
    monkeypatch.setenv("DRA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DRA_HOME", str(empty / "dra"))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty / "hf"))


@pytest.fixture
def server(monkeypatch):
    """A FileServer that every fetch URL is mirrored to; retries do not pause, no proxy is used, no other host
    resolves."""
    for name in ("DRA_MIRROR", "DRA_OFFLINE", "TQDM_DISABLE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(fetch, "RETRY_WAIT_S", 0.0)
    # a URL that escaped the mirror fails here instead of reaching the internet
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in {"127.0.0.1", "localhost"}:
            raise OSError(f"test tried to reach {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    with FileServer() as s:
        monkeypatch.setenv("DRA_MIRROR", s.base)
        yield s
