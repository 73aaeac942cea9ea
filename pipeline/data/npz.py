"""DM-AT synthetic data: an `.npz` with `image` (uint8 N x H x W x C) and `label` (N,).

DM-AT's 20M-image file is 61 GB, so the image member is never loaded: when it is stored uncompressed
(`np.savez`), the `.npy` inside the zip is memory-mapped at its byte offset. A compressed member
(`np.savez_compressed`) cannot be mapped; `convert_npz` rewrites it once, streaming, as a stored member.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from dra_pipeline.atomic import atomic_write
from dra_pipeline.data.base import ImageSource, SourceSpec, check_images_and_labels, declared_classes
from dra_pipeline.errors import DataError

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes
_COPY_BYTES = 64 << 20  # streaming conversion buffer


def _member(zf: zipfile.ZipFile, key: str, path: Path) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(key + ".npy")
    except KeyError:
        keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise DataError(f"{path}: no {key!r} array (arrays: {keys}); DM-AT files hold 'image' and 'label'") from None


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset in the zip file where a stored member's payload starts."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise DataError(f"{path}: corrupt zip local header for {info.filename}")
    name_len, extra_len = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def _read_npy_header(f) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy whose magic string starts at f's position."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise DataError(f"unsupported .npy format version {version}")


def map_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Memory-map (read-only) a `.npy` member stored uncompressed inside a zip."""
    start = _data_offset(path, info)
    with open(path, "rb") as f:
        f.seek(start)
        shape, fortran, dtype = _read_npy_header(f)
        array_offset = f.tell()
    if fortran:
        raise DataError(f"{path}: {info.filename} is Fortran-ordered; save it C-ordered")
    return np.memmap(path, dtype=dtype, mode="r", offset=array_offset, shape=shape)


class NpzImages(ImageSource):
    """A DM-AT synthetic-data npz; images memory-mapped, labels (small) read into RAM."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        path = Path(spec.path)
        if not path.is_file():
            raise DataError(f"{path} not found")
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{path}: not a valid npz/zip file ({e})") from None
        with zf:
            image_info = _member(zf, "image", path)
            label_info = _member(zf, "label", path)
            if image_info.compress_type != zipfile.ZIP_STORED:
                raise DataError(
                    f"{path}: 'image' is compressed and cannot be memory-mapped; convert it once with "
                    f"`dra-pipeline data convert-npz {path} --out {path.with_name(path.stem + '-stored.npz')}`"
                )
            try:
                with zf.open(label_info) as f:
                    labels = np.lib.format.read_array(f, allow_pickle=False)
            except ValueError as e:  # object arrays (pickles) among them: never loaded
                raise DataError(f"{path}: 'label' is not a plain numeric array ({e})") from None
        self._images = map_member(path, image_info)
        self.labels, self.num_classes = check_images_and_labels(
            str(path), self._images.shape, self._images.dtype, labels, declared_classes(spec)
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._images.shape[1:])

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self._images[start:stop]

    def read(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # sorted reads walk the file forwards
        out = np.empty((len(idx), *self.image_shape), dtype=np.uint8)
        out[order] = self._images[idx[order]]
        return out


def convert_npz(src: Path, dst: Path) -> None:
    """Rewrite an npz with every member stored uncompressed, streaming (constant memory)."""
    if dst.exists():
        raise DataError(f"{dst} already exists; choose another --out")

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                with zin.open(info) as fin, zout.open(info.filename, "w", force_zip64=True) as fout:
                    while chunk := fin.read(_COPY_BYTES):
                        fout.write(chunk)

    try:
        atomic_write(dst, write)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{src}: cannot convert ({e})") from None
