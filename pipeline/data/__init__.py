"""Image sources by name or path, and the index space that stitches several into rows.

A source is written as text on the command line and stored as a `SourceSpec` in a feature store:
  fashion-mnist[:train|:test]   cifar10[:split]   cifar100[:split]    named datasets, found via --data-dir,
                                                                       $DRA_DATA_DIR or their default folder;
                                                                       CIFAR is downloaded there when absent
  PATH.npz  PATH.h5  DIR/                                              DM-AT npz, HDF5, image folder
  KIND:PATH                                                            explicit kind (npz, hdf5, folder)
  ...?key=value&key=value                                              options, e.g. file.h5?images=x&labels=y
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from dra_pipeline.data.base import ImageSource, SourceSpec
from dra_pipeline.data.cifar import Cifar10, Cifar100
from dra_pipeline.data.folder import EXTENSIONS, ImageFolder
from dra_pipeline.data.hdf5 import Hdf5Images
from dra_pipeline.data.idx import FashionMNIST
from dra_pipeline.data.npz import NpzImages
from dra_pipeline.errors import DataError, FetchError
from dra_pipeline.fetch import CIFAR10, CIFAR100, Remote, fetch_archive


@dataclass(frozen=True)
class NamedDataset:
    source: type[ImageSource]
    folder: str  # conventional folder name under a data root
    default_dir: Path  # where it is looked for last
    probes: dict[str, str]  # split -> a file that must exist there (a .gz variant also counts)
    hint: str  # how to get the files, for the error message
    remote: Remote | None = None  # the official archive holding `folder`, downloaded when the files are absent


NAMED: dict[str, NamedDataset] = {
    "fashion-mnist": NamedDataset(
        FashionMNIST,
        "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
        {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"},
        "install them with `apt-get install dataset-fashion-mnist`",
    ),
    "cifar10": NamedDataset(
        Cifar10,
        "cifar-10-batches-py",
        Path("data/cifar-10-batches-py"),
        {"train": "data_batch_1", "test": "test_batch"},
        "unpack the official cifar-10-python.tar.gz into data/",
        CIFAR10,
    ),
    "cifar100": NamedDataset(
        Cifar100,
        "cifar-100-python",
        Path("data/cifar-100-python"),
        {"train": "train", "test": "test"},
        "unpack the official cifar-100-python.tar.gz into data/",
        CIFAR100,
    ),
}
BY_PATH: dict[str, type[ImageSource]] = {"npz": NpzImages, "hdf5": Hdf5Images, "folder": ImageFolder}
_SUFFIX_KIND = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}
SPLITS = ("train", "test")


def locate_named(kind: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding a named dataset's split: --data-dir, then $DRA_DATA_DIR, then its default folder.

    Each of the first two may be the dataset folder itself or a root holding it under its conventional name. A
    dataset with an official archive (CIFAR) that is in none of them is downloaded into the data folder (see
    `download_root`), verified and unpacked there.
    """
    ds = NAMED[kind]
    if split not in ds.probes:
        raise DataError(f"{kind}: unknown split {split!r} (choose {' or '.join(ds.probes)})")
    if data_dir:  # named explicitly: looked up there only, never replaced by another copy
        candidates = [Path(data_dir), Path(data_dir) / ds.folder]
    else:
        env = os.environ.get("DRA_DATA_DIR")
        candidates = [*([Path(env), Path(env) / ds.folder] if env else []), ds.default_dir]
    probe = ds.probes[split]
    for d in candidates:
        if (d / probe).is_file() or (d / (probe + ".gz")).is_file():
            return d.resolve()
    missing = f"{kind} {split}: {probe} not found in {', '.join(str(c) for c in candidates)}"
    if ds.remote is None:
        if data_dir:
            held, folder = _named_in(Path(data_dir)), Path(data_dir)
            found = f"it holds {held} files" if held else "it holds no dataset this tool knows"
            if not held and any(f.suffix.lower() in EXTENSIONS for f in folder.glob("*/*")):
                found = f"it is an image folder: pass it as --data {data_dir}"
            raise DataError(
                f"--data-dir {data_dir} holds no {kind} {split} ({probe}[.gz] expected there or in "
                f"{Path(data_dir) / ds.folder}; {found}); {ds.hint}, or leave --data-dir out to use {ds.default_dir}"
            )
        raise DataError(f"{missing}; {ds.hint}, or pass --data-dir / set DRA_DATA_DIR")
    try:
        folder = fetch_archive(ds.remote, download_root(kind, data_dir), expect=ds.folder)
    except FetchError as e:
        raise DataError(f"{missing}; {e}") from None
    if not (folder / probe).is_file():  # an existing folder is kept as it is, even an incomplete one
        raise DataError(f"{folder} holds no {probe}; delete the folder to download {ds.remote.url} again")
    return folder.resolve()


def _named_in(folder: Path) -> str:
    """The named datasets whose files `folder` (or its conventional sub-folder) holds, e.g. "cifar10"; "" if none."""
    held = []
    for name, ds in NAMED.items():
        for d in (folder, folder / ds.folder):
            if any((d / p).is_file() or (d / (p + ".gz")).is_file() for p in ds.probes.values()):
                held.append(name)
                break
    return ", ".join(held)


def download_root(kind: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder a named dataset is downloaded into: --data-dir, else $DRA_DATA_DIR, else the parent of its
    default folder (data/). A data folder that is the dataset's own folder by name means its parent."""
    ds = NAMED[kind]
    base = Path(data_dir or os.environ.get("DRA_DATA_DIR") or ds.default_dir.parent)
    return base.parent if base.name == ds.folder else base


def parse_source(text: str, *, data_dir: str | os.PathLike | None = None) -> SourceSpec:
    """Turn command-line text into a resolved SourceSpec (see the module docstring for the grammar)."""
    body, _, query = text.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    name, _, split = body.partition(":")
    if name in NAMED:
        split = split or "train"
        return SourceSpec(name, str(locate_named(name, split, data_dir)), split, options)
    if name in BY_PATH and split:
        kind, path = name, Path(split)
    else:
        path = Path(body)
        kind = _SUFFIX_KIND.get(path.suffix.lower()) or ("folder" if path.is_dir() else None)
        if kind is None:
            known = ", ".join(NAMED)
            raise DataError(f"{text}: not a known dataset ({known}), .npz, .h5/.hdf5 file or image folder")
    if not path.exists():
        raise DataError(f"{path} not found")
    return SourceSpec(kind, str(path.resolve()), "all", options)


def source_kind(text: str) -> tuple[str, str]:
    """(kind, split) that source text names, read from the text alone (no files are touched): ("cifar10",
    "train"), ("fashion-mnist", "test"), ("folder", "all"), ("npz", "all")."""
    body = text.partition("?")[0]
    name, _, rest = body.partition(":")
    if name in NAMED:
        return name, rest or "train"
    if name in BY_PATH and rest:
        return name, "all"
    return _SUFFIX_KIND.get(Path(body).suffix.lower(), "folder"), "all"


def dataset_name(spec: SourceSpec | dict) -> str:
    """The dataset a source is, by name: a named dataset's own ("cifar10"), else the parent and own name of its
    folder or file ("cifar10-jpeg/train", "data/1m"): never a named dataset's name, and two folders called train
    in different places differ. A run records it with the source's fingerprint (the content) as its dataset."""
    spec = spec if isinstance(spec, SourceSpec) else SourceSpec.from_dict(spec)
    if spec.kind in NAMED:
        return spec.kind
    path = Path(spec.path)
    return f"{path.parent.name}/{path.stem if path.suffix.lower() in _SUFFIX_KIND else path.name}"


def open_source(spec: SourceSpec | str, *, data_dir: str | os.PathLike | None = None) -> ImageSource:
    """Open and validate a source. A named dataset whose recorded folder is gone is looked up again."""
    if isinstance(spec, str):
        spec = parse_source(spec, data_dir=data_dir)
    if spec.kind in NAMED:
        probe = Path(spec.path) / NAMED[spec.kind].probes.get(spec.split, "")
        if not (probe.is_file() or probe.with_name(probe.name + ".gz").is_file()):
            spec = SourceSpec(spec.kind, str(locate_named(spec.kind, spec.split, data_dir)), spec.split, spec.options)
        return NAMED[spec.kind].source(spec)
    if spec.kind not in BY_PATH:
        raise DataError(f"unknown source kind {spec.kind!r} (known: {', '.join([*NAMED, *BY_PATH])})")
    return BY_PATH[spec.kind](spec)


__all__ = [
    "ImageSource",
    "SourceSpec",
    "open_source",
    "parse_source",
    "source_kind",
    "dataset_name",
    "locate_named",
    "download_root",
    "NAMED",
    "SPLITS",
]
