"""Atomic file replacement: a file under its final name is always complete (old or new, never half-written)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from dra_pipeline.errors import DraError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) fills a temp file beside `path` (named .NAME.<uuid>.tmp); it is synced, then renamed onto
    `path`. On any error the temp file is removed and `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def check_writable(path: Path, what: str = "output") -> None:
    """Raise one DraError line unless `path` (which may not exist yet) can be created: its nearest existing
    ancestor must be a writable folder. Writes nothing; call it before any work whose result goes to `path`."""
    path = Path(path).absolute()
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DraError(f"cannot write the {what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DraError(f"cannot write the {what} {path}: the folder {ancestor} is not writable")
