"""Tiny stand-ins for the files the pipeline downloads, written in their published formats, for the local server:

  /~kriz/cifar-10-python.tar.gz, /~kriz/cifar-100-python.tar.gz   the official python tarballs' layout
  /edm/pretrained/edm-cifar10-32x32-cond-vp.pkl                    an EDM pickle in NVIDIA's persistence format

The EDM network is a DDPM++ SongUNet shrunk (16-32 channels) but with the CIFAR spec's module names and 8x8 stage,
so `edm-cifar10` reads it at its default layer `dec.8x8_block4`.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import numpy as np

from dra_pipeline import data, fetch
from dra_pipeline.hashing import file_md5
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig
from tests import fixtures
from tests.edm_pickle_fixture import write_edm_pickle

CIFAR10_PATH = "/~kriz/cifar-10-python.tar.gz"
CIFAR100_PATH = "/~kriz/cifar-100-python.tar.gz"
EDM_PATH = "/edm/pretrained/edm-cifar10-32x32-cond-vp.pkl"
# CIFAR10_DDPMPP's layout (32 -> 16 -> 8 px, 4 blocks a level, attention at 16 px, 9 augment labels), 16-32 channels
TINY_DDPMPP = SongUNetConfig(model_channels=16, channel_mult=(1, 2, 2), label_dim=10, augment_dim=9)


def cifar10_tarball(path: Path, n_train: int = 100, n_test: int = 20, *, extra=()) -> Path:
    """cifar-10-python.tar.gz as published: one `cifar-10-batches-py/` folder (data_batch_1..5, test_batch,
    batches.meta, readme.html). `extra` adds (TarInfo, bytes) members, e.g. unsafe ones.

    Training images have classes 1-9, test images class 0: a model trained on them for a few steps gets (nearly)
    every test image wrong, so AutoAttack, which attacks only correctly classified points, finishes at once."""
    src = path.parent / f".{path.name}.src"
    images, labels = fixtures.random_images(n_train, 32, 32, 3, seed=11), 1 + np.arange(n_train) % 9
    tests = fixtures.random_images(n_test, 32, 32, 3, seed=12), np.zeros(n_test, dtype=np.int64)
    fixtures.write_cifar10(src / "cifar-10-batches-py", images, labels, *tests)
    (src / "cifar-10-batches-py" / "readme.html").write_text("<html>CIFAR-10</html>\n")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        for info, body in extra:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def cifar100_tarball(path: Path, n: int = 40) -> Path:
    """cifar-100-python.tar.gz as published: `cifar-100-python/` holding train, test and meta."""
    src = path.parent / f".{path.name}.src"
    fixtures.write_cifar100(src / "cifar-100-python", fixtures.random_images(n, 32, 32, 3, seed=13), np.arange(n))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "cifar-100-python", arcname="cifar-100-python")
    return path


def edm_pickle(path: Path) -> Path:
    """edm-cifar10-32x32-cond-vp.pkl's format and layout at TINY_DDPMPP's width, random weights (seed 0)."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        write_edm_pickle(path, EDMDenoiser(TINY_DDPMPP).eval())
    return path


def pin(monkeypatch, name: str, archive: Path, **digests) -> None:
    """Make the named dataset's published digest and size those of `archive` (the fixture stands in for it);
    `digests` (md5=..., size=...) replace them."""
    ds = data.NAMED[name]
    pinned = {"md5": file_md5(archive), "size": archive.stat().st_size, **digests}
    remote = dataclasses.replace(ds.remote, **pinned)
    monkeypatch.setitem(data.NAMED, name, dataclasses.replace(ds, remote=remote))


def serve_cifar10_and_edm(server, monkeypatch, folder: Path) -> dict[str, bytes]:
    """Serve the CIFAR-10 tarball (its digest pinned) and the EDM pickle at their published paths; their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = cifar10_tarball(folder / "cifar-10-python.tar.gz")
    pin(monkeypatch, "cifar10", archive)
    files = {CIFAR10_PATH: archive.read_bytes(), EDM_PATH: edm_pickle(folder / "edm.pkl").read_bytes()}
    for url_path, body in files.items():
        server.serve(url_path, body)
    assert fetch.edm_remote("edm-cifar10-32x32-cond-vp").url.endswith(EDM_PATH)
    return files
