"""Streaming content hashes: the one place that hashes checkpoints, archives, dataset files and weight folders."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from dra_pipeline.atomic import atomic_write_text

CHUNK_BYTES = 1 << 20  # read size; large enough that hashing runs at disk speed, small enough to stay out of memory
RACY_S = 2  # seconds: a file modified this recently is hashed again next time (mtime ticks can be coarse)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of the file at `path` with `algorithm` (any name hashlib knows), read in 1 MiB chunks."""
    # usedforsecurity=False: md5 is an integrity check here, and FIPS-mode builds refuse it without the flag
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file as 64 lowercase hex characters."""
    return file_digest(path, "sha256")


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file as 32 lowercase hex characters (the checksum datasets such as CIFAR publish)."""
    return file_digest(path, "md5")


def folder_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over `files` sorted by path relative to `root`, each as its relative path, a NUL, then its bytes."""
    return named_files_sha256({path.relative_to(root).as_posix(): path for path in files})


def named_files_sha256(files: dict[str, Path]) -> str:
    """folder_sha256 of files given by the relative name each would have in one folder (files kept apart, such as
    those of two Hugging Face repos, hash as they would side by side)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        with open(files[name], "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                h.update(chunk)
    return h.hexdigest()


def folder_sha256_cached(root: Path, files: list[Path], cache: Path | None) -> str:
    """folder_sha256, remembered in the folder `cache` under a signature of every file's (relative path, size,
    mtime): a folder whose files all keep their size and mtime is not read again (stat calls only; ImageNet's
    140 GB train folder would take minutes to hash at each start of each process). None: always hash.

    A digest is remembered only when every file is older than RACY_S seconds at hashing time, so a file edited
    within the same mtime tick as the hash (git's "racily clean" case) is never trusted by its mtime.
    """
    if cache is None:
        return folder_sha256(root, files)
    signature = hashlib.sha256()
    newest = 0
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        st = path.stat()
        newest = max(newest, st.st_mtime_ns)
        signature.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    entry = Path(cache) / (hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:32] + ".json")
    try:
        saved = json.loads(entry.read_text())
        if saved["signature"] == signature.hexdigest():
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    started = time.time_ns()
    digest = folder_sha256(root, files)
    if newest < started - RACY_S * 1e9:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            record = {"root": str(root), "signature": signature.hexdigest(), "sha256": digest}
            atomic_write_text(entry, json.dumps(record))
        except OSError:
            pass  # a cache that cannot be written costs time, never correctness
    return digest
