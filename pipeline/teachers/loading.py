"""Reading teacher weights, shared by every model family: strict state-dict loading with one-line errors, and
torch checkpoints read as data (never code)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch
from torch import Tensor, nn

from dra_pipeline.errors import DraError


def load_strict(module: nn.Module, state: dict[str, Tensor], where: Path, *, assign: bool = False) -> None:
    """load_state_dict(strict=True) with the first missing/unexpected/mis-shaped key named in one line.

    assign=True takes the given tensors as the module's (for a module built on the meta device).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise DraError(
            f"{where}: state dict does not match the network ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise DraError(
                f"{where}: {key} has shape {tuple(value.shape)}, the network expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(state, strict=True, assign=assign)


def read_torch_file(path: Path):
    """A torch checkpoint read as data (`weights_only=True`): tensors, plain containers and argparse Namespaces only,
    never code.

    Zip-format files (torch >= 1.6) are memory-mapped, so only the parts used are read from disk.
    """
    import pickle

    if not path.is_file():
        raise DraError(f"checkpoint {path} not found")
    for mmap in (True, False):  # the legacy (pre-zip) format cannot be memory-mapped
        try:
            with _allow_namespace():
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DraError(
                f"{path}: holds Python objects other than tensors and plain containers; refused to "
                f"unpickle them ({first})"
            ) from None
        except (RuntimeError, EOFError, ValueError) as e:
            error = e
    raise DraError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {str(error)[:200]})")


def _allow_namespace():
    """DiT-style training checkpoints keep their argparse Namespace under `args` (attributes only, no code)."""
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return allow([argparse.Namespace]) if allow else contextlib.nullcontext()
