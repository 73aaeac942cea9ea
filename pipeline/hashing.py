"""Streaming content hashes: the one place that hashes checkpoints, archives, dataset files and weight folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20  # read size; large enough that hashing runs at disk speed, small enough to stay out of memory


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
