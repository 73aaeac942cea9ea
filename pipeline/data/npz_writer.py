"""DM-AT's npz format (`image` uint8 N x H x W x C, `label` int64 N) written in resumable chunks.

`.NAME.npz.parts/` beside NAME.npz holds `settings.json` (what the chunks were made with: another call with other
settings is refused) and `chunk-KKKKKK.npz` files, each written whole by temp file and rename. `finish()` streams
the chunks into NAME.npz, one chunk in RAM at a time, members stored uncompressed so that the npz source can
memory-map `image.npy`, and removes the parts.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from dra_pipeline.atomic import atomic_write, atomic_write_text
from dra_pipeline.errors import DraError


class ChunkedNpzWriter:
    def __init__(self, out: Path, settings: dict, *, count: int, chunk_size: int, shape: tuple[int, int, int]):
        """Claim the parts folder of `out` for `settings` (or check that an existing one was made with them)."""
        self.out, self.count, self.chunk_size, self.shape = Path(out), count, chunk_size, tuple(shape)
        if self.out.exists():
            raise DraError(f"{self.out} already exists; choose another --out or delete it")
        if count < 1 or chunk_size < 1:
            raise DraError(f"need count >= 1 and chunk size >= 1, got {count} and {chunk_size}")
        self.parts = self.out.with_name(f".{self.out.name}.parts")
        self._claim(settings)

    def chunks(self) -> list[tuple[int, int]]:
        """[start, stop) image indices of every chunk, in order."""
        return [(a, min(a + self.chunk_size, self.count)) for a in range(0, self.count, self.chunk_size)]

    def _path(self, start: int) -> Path:
        return self.parts / f"chunk-{start // self.chunk_size:06d}.npz"

    def has(self, start: int) -> bool:
        """True when the chunk starting at image `start` was written completely by an earlier call."""
        return self._path(start).is_file()

    def write(self, start: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Write one chunk whole: images uint8 (n, H, W, C), labels int64 (n,)."""

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, image=images, label=labels)

        atomic_write(self._path(start), save)

    def finish(self, expected_labels) -> Path:
        """Stream every chunk into `out` (checking shapes and that labels equal expected_labels(start, stop)),
        then remove the parts. Returns `out`."""
        chunks = self.chunks()
        missing = [a for a, _ in chunks if not self.has(a)]
        if missing:
            raise DraError(f"{self.parts}: {len(missing)} chunks are not written yet; rerun to finish them")

        def assemble(tmp: Path) -> None:
            with open(tmp, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
                with zf.open("image.npy", "w", force_zip64=True) as f:
                    _write_npy_header(f, np.uint8, (self.count, *self.shape))
                    for start, stop in chunks:
                        with np.load(self._path(start)) as z:
                            images, labels = z["image"], z["label"]
                        if images.shape != (stop - start, *self.shape) or images.dtype != np.uint8:
                            raise DraError(
                                f"{self._path(start)}: images {images.dtype} {images.shape}, expected uint8 "
                                f"{(stop - start, *self.shape)}; delete it and rerun"
                            )
                        if not np.array_equal(labels, expected_labels(start, stop)):
                            raise DraError(
                                f"{self._path(start)}: labels are not the expected ones; delete it and rerun"
                            )
                        f.write(np.ascontiguousarray(images).data)
                with zf.open("label.npy", "w", force_zip64=True) as f:
                    _write_npy_header(f, np.int64, (self.count,))
                    for start, stop in chunks:
                        f.write(np.ascontiguousarray(expected_labels(start, stop), dtype=np.int64).data)

        atomic_write(self.out, assemble)
        for start, _ in chunks:
            self._path(start).unlink()
        (self.parts / "settings.json").unlink()
        for stray in self.parts.glob(".*.tmp"):  # temp files of interrupted chunk writes
            stray.unlink()
        with contextlib.suppress(OSError):  # a folder still holding files this writer did not write stays
            self.parts.rmdir()
        return self.out

    def _claim(self, settings: dict) -> None:
        record = self.parts / "settings.json"
        settings = json.loads(json.dumps(settings))
        if record.is_file():
            old = json.loads(record.read_text())
            diff = [
                f"{k} was {old.get(k)!r}, now {settings.get(k)!r}"
                for k in settings.keys() | old.keys()
                if old.get(k) != settings.get(k)
            ]
            if diff:
                raise DraError(
                    f"{self.parts} holds chunks made with other settings ({'; '.join(sorted(diff))}); "
                    "rerun with those settings or delete that folder"
                )
            return
        if any(self.parts.glob("chunk-*.npz")):
            raise DraError(f"{self.parts} holds chunks but no settings.json; delete that folder to start again")
        self.parts.mkdir(exist_ok=True)
        atomic_write_text(record, json.dumps(settings, indent=1))


def _write_npy_header(f: io.RawIOBase, dtype, shape: tuple[int, ...]) -> None:
    """The .npy header of a C-ordered array; the array bytes follow it."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
