"""Training checkpoints, the one owner of their contract: file names, the dict format, atomic saving, weights-only
loading, finding a run's newest checkpoint, and rebuilding the classifier a checkpoint holds.

A run directory holds `last.pt` (everything needed to resume at an epoch end) and `best-ema.pt` (the EMA weights
with the best validation robust accuracy). Both carry `model_info` (name, dataset, num_classes, in_channels,
image_size, eps; from this version also dataset_fingerprint, normalisation {name, mean, std} and, for a run on a
trial store, trial {rows, of}), so the classifier can be rebuilt without the training data. Loading always uses
`weights_only=True`: a checkpoint is data, never code. On the CPU the rebuilt model is put in channels-last (NHWC)
memory format: attacks on it run 1.3-1.7x faster (SmallCNN, batches of 100-500; outputs equal up to float
rounding), and evaluate, analyze and bench/evaluate_overhead.py all attack the model loaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dra_pipeline.atomic import atomic_write
from dra_pipeline.errors import DraError
from dra_pipeline.models import Classifier, create_model

LAST = "last.pt"  # resumable state at the latest epoch end
BEST_EMA = "best-ema.pt"  # EMA weights of the best validation epoch
MODEL_INFO = ("name", "dataset", "num_classes", "in_channels")  # needed to rebuild the classifier


def training_checkpoint(
    *,
    model: dict,
    ema: dict,
    head: dict | None,
    optimizer: dict,
    scheduler: dict,
    epoch: int,
    best_robust: float,
    model_info: dict,
) -> dict:
    """The `last.pt` dict: state dicts of every trained part, epochs completed, best validation robust accuracy."""
    return {
        "model": model,
        "ema": ema,
        "head": head,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "epoch": epoch,
        "best_robust": best_robust,
        "model_info": model_info,
    }


def best_ema_checkpoint(*, ema: dict, model_info: dict, epoch: int, val_robust: float, val_clean: float) -> dict:
    """The `best-ema.pt` dict: EMA weights with how to rebuild them and the validation accuracy that chose them."""
    return {"ema": ema, "model_info": model_info, "epoch": epoch, "val_robust": val_robust, "val_clean": val_clean}


def save(path: Path, state: dict) -> None:
    """torch.save to a temp file, synced, then renamed: a crash never leaves a broken checkpoint under `path`."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load(path: Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint dict read with weights_only=True; a missing, truncated or foreign file is one clear line."""
    path = Path(path)
    if not path.is_file():
        raise DraError(f"checkpoint {path} not found")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: one clear line
        raise DraError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise DraError(f"{path}: not a dra-pipeline training checkpoint (holds a {type(saved).__name__}, not a dict)")
    return saved


def newest_run(root: str | Path = "runs") -> Path:
    """The run directory under `root` whose best-ema.pt was written last."""
    candidates = sorted(Path(root).glob(f"*/{BEST_EMA}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise DraError(f"no run with a {BEST_EMA} under {root}/; train one first or pass --run / --checkpoint")
    return candidates[-1].parent


def resolve_checkpoint(*, run: Path | None, checkpoint: Path | None, runs_root: Path = Path("runs")) -> Path:
    """--checkpoint FILE as given; --run DIR -> DIR/best-ema.pt; neither -> the newest run's best-ema.pt."""
    if run is not None and checkpoint is not None:
        raise DraError("pass --run or --checkpoint, not both")
    if checkpoint is not None:
        return Path(checkpoint)
    run = Path(run) if run is not None else newest_run(runs_root)
    if not run.is_dir():
        raise DraError(f"run directory {run} not found")
    path = run / BEST_EMA
    if not path.is_file():
        raise DraError(f"{run}: no {BEST_EMA} (not a run directory, or training has not saved a checkpoint yet)")
    return path


@dataclass(frozen=True)
class LoadedClassifier:
    model: Classifier  # in eval mode, gradients off for its parameters
    info: dict  # model_info: name, dataset, num_classes, in_channels, image_size, eps
    checkpoint: Path
    epoch: int | None  # epochs completed when it was saved


def check_model_info(path: Path, info: dict) -> None:
    """Raise one DraError line when a checkpoint's model_info lacks a field or holds one of the wrong kind."""
    missing = [k for k in MODEL_INFO if k not in info]
    if missing:
        raise DraError(f"{path}: model_info lacks {', '.join(missing)}; cannot rebuild the classifier")

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    size = info.get("image_size")
    eps = info.get("eps")
    wrong = [
        *(k for k in ("name", "dataset") if not (isinstance(info[k], str) and info[k])),
        *(k for k in ("num_classes", "in_channels") if not whole(info[k])),
        *(
            ["image_size"]
            if size is not None and not (isinstance(size, (list, tuple)) and all(map(whole, size)))
            else []
        ),
        *(["eps"] if eps is not None and not (isinstance(eps, (int, float)) and 0 <= eps < float("inf")) else []),
        *(["normalisation"] if "normalisation" in info and not _is_normalisation(info["normalisation"]) else []),
    ]
    if wrong:
        shown = ", ".join(f"{k}={info.get(k)!r}" for k in wrong)
        raise DraError(f"{path}: model_info holds invalid {shown}; cannot rebuild the classifier")


def _is_normalisation(record) -> bool:
    """A {"mean": [...], "std": [...]} record of equal-length lists of numbers, every std positive."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), list) for k in ("mean", "std")):
        return False
    mean, std = record["mean"], record["std"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean + std)
    return numbers and len(mean) == len(std) and all(v > 0 for v in std)


def load_classifier(checkpoint: str | Path, device: str | torch.device = "cpu") -> LoadedClassifier:
    """Rebuild the EMA classifier stored in a `train` checkpoint (best-ema.pt or last.pt), in eval mode."""
    path = Path(checkpoint)
    saved = load(path, device)
    if "ema" not in saved or not isinstance(saved.get("model_info"), dict):
        raise DraError(f"{path}: not a dra-pipeline training checkpoint (needs 'ema' and 'model_info')")
    info = saved["model_info"]
    check_model_info(path, info)
    model = create_model(
        info["name"],
        dataset=info["dataset"],
        num_classes=info["num_classes"],
        in_channels=info["in_channels"],
        normalisation=info.get("normalisation"),  # absent in older checkpoints: the dataset's published one
    )
    try:
        model.load_state_dict(saved["ema"])
    except RuntimeError as e:
        raise DraError(f"{path}: weights do not fit {info['name']} ({str(e).splitlines()[0]})") from None
    model.to(device).eval().requires_grad_(False)
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
    return LoadedClassifier(model, info, path, saved.get("epoch"))
