"""How long a source's content fingerprint (every byte of every image, data/base.py) takes to compute.

    python bench/fingerprint.py [--rows 1000000] [--dir DIR] [--folder-images 20000]

Times, each in a fresh source object: Fashion-MNIST train (60,000 x 28 x 28 x 1, from the installed dataset), a
rows x 32 x 32 x 3 uint8 npz (written once into --dir, memory-mapped like DM-AT's files) and an image folder of
--folder-images 32 x 32 PNGs (file bytes hashed, not decoded; then again, answered by the (path, size, mtime) cache
kept in --dir), then prints images/s and MB/s for each. Files are read through the page cache as the machine has
them (a file just written is warm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dra_pipeline.data import open_source
from dra_pipeline.environment import describe, environment

CHUNK_ROWS = 100_000  # rows generated per step when writing the npz (300 MB of 32 x 32 x 3)


def write_npz(path: Path, rows: int) -> None:
    """A stored (uncompressed) npz with `image` rows x 32 x 32 x 3 uint8 and `label`, written in chunks."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        with zf.open("image.npy", "w", force_zip64=True) as f:
            header = {"descr": "|u1", "fortran_order": False, "shape": (rows, 32, 32, 3)}
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, rows, CHUNK_ROWS):
                n = min(CHUNK_ROWS, rows - start)
                f.write(np.random.default_rng(start).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8).tobytes())
        with zf.open("label.npy", "w") as f:
            np.lib.format.write_array(f, (np.arange(rows) % 10).astype(np.int64))


def write_folder(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:07d}.png")


def timed(text: str) -> tuple[float, int, int]:
    """(seconds, rows, bytes hashed) of one fingerprint of a freshly opened source."""
    source = open_source(text)
    start = time.perf_counter()
    source.fingerprint()
    seconds = time.perf_counter() - start
    hashed = len(source) * int(np.prod(source.image_shape))
    files = getattr(source, "files", None)
    if files is not None:  # a folder hashes its files' bytes
        hashed = sum((Path(source.spec.path) / f).stat().st_size for f in files)
    return seconds, len(source), hashed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--folder-images", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "dra-bench-fingerprint")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {describe(environment('cpu'))}")
    npz = args.dir / f"rows-{args.rows}.npz"
    if not npz.exists():
        start = time.perf_counter()
        write_npz(npz, args.rows)
        print(f"wrote {npz} ({npz.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.1f} s")
    folder = args.dir / f"folder-{args.folder_images}"
    if not folder.exists():
        write_folder(folder, args.folder_images)
    cache = args.dir / "fingerprint-cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["DRA_FINGERPRINT_CACHE"] = str(cache)
    print(f"{'source':40s} {'rows':>9s} {'MB hashed':>10s} {'seconds':>8s} {'img/s':>10s} {'MB/s':>7s}")
    runs = [("fashion-mnist train", "fashion-mnist"), (npz.name, str(npz)), (folder.name, str(folder))]
    for name, text in [*runs, (f"{folder.name} again (cached digest)", str(folder))]:
        seconds, rows, hashed = timed(text)
        mb = hashed / 1e6
        print(f"{name:40s} {rows:9d} {mb:10.1f} {seconds:8.2f} {rows / seconds:10.0f} {mb / seconds:7.0f}")


if __name__ == "__main__":
    main()
