"""Shared test helpers: file-tree snapshots, one-line errors, a tiny store's extract command, a SmallCNN checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.models import create_model
from tests import fixtures

INFO = {
    "name": "small-cnn",
    "dataset": "fashion-mnist",
    "num_classes": 10,
    "in_channels": 1,
    "image_size": [28, 28],
    "eps": 0.1,
}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) by relative path -> its bytes; folders as b'<dir>'."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else b"<dir>"
    return out


def changes(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Paths added, removed or changed between two snapshots."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:
    """The one line a refused command printed ('Error: ...'), asserting there is exactly one and no traceback."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


def fmnist(root: Path, n_train: int = 48) -> Path:
    d = root / "fashion-mnist"
    fixtures.write_fashion_mnist(d, n_train=n_train, n_test=20)
    return d


def extract_args(data: Path, out: Path, *extra, rows_per_shard: int = 16) -> list:
    """`extract` with the tiny-gray teacher over a Fashion-MNIST folder, on CPU."""
    return [
        "extract",
        "--teacher",
        "tiny-gray",
        "--data",
        "fashion-mnist",
        "--data-dir",
        data,
        "--out",
        out,
        "--rows-per-shard",
        rows_per_shard,
        "--batch-size",
        16,
        "--device",
        "cpu",
        *extra,
    ]


def write_checkpoint(path: Path, seed: int = 0, favour: int | None = None) -> Path:
    """A random SmallCNN saved as a train checkpoint (best-ema.pt layout); `favour` biases it hard to one class."""
    torch.manual_seed(seed)
    model = create_model("small-cnn", dataset="fashion-mnist", num_classes=10, in_channels=1)
    if favour is not None:
        with torch.no_grad():
            model.head.bias[favour] += 50
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"ema": model.state_dict(), "model_info": INFO, "epoch": 1}, path)
    return path


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def shard_files(store: Path) -> dict[str, bytes]:
    """The bytes of a store's shard files and completion records: what makes two stores the same."""
    return {k: v for k, v in snapshot(store).items() if k.startswith(("features/c/", "done/")) and v != b"<dir>"}
