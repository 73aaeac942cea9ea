"""A Hugging Face hub cache laid out by hand, as huggingface_hub writes it, for offline hub tests:

CACHE/models--OWNER--NAME/refs/main                  the commit the main branch points at
CACHE/models--OWNER--NAME/snapshots/COMMIT/<files>   the repo's files at that commit
"""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """Put `files` (repo-relative name -> a file to copy, or its bytes) into the cache as `repo_id` at main; return
    the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def folder_files(root: Path, prefix: str = "") -> dict[str, Path]:
    """Every file under `root` by its relative name (with `prefix` put in front), for add_repo."""
    return {prefix + p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
