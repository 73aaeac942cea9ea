"""Content hashes of files and folders, streamed in blocks (constant memory whatever the file size)."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 24  # bytes read per update


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, as hex."""
    return _file_digest(Path(path), "sha256")


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes, as hex (the checksum torchvision pins for the CIFAR tarballs)."""
    return _file_digest(Path(path), "md5")


def folder_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over `files` sorted by path relative to `root`, each as its relative path, a NUL, then its bytes."""
    h = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
    return h.hexdigest()
