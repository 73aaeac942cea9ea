"""The public API: the three stages and two loaders, as a notebook calls them; the commands call the same functions.

    >>> import dra_pipeline as d
    >>> store = d.extract("edm-fmnist", n=1024).store            # stage one: teacher features of 1024 images
    >>> run = d.train(store, epochs=1, out="runs/trial")          # stage two: TRADES + DRA
    >>> d.evaluate(run, n=100, attack="apgd-ce").report["robust"]  # stage three: robust accuracy with its interval

Messages go to the `dra_pipeline` logger (`logging.basicConfig(level=logging.INFO)` shows them); progress bars only
when `progress` is given: for extract and train a factory (dra_pipeline.jobs.ProgressFactory), for evaluate a
callable told each attack step (dra_pipeline.evaluation.worst_case.Step). User errors raise DraError, one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dra_pipeline.jobs import ProgressFactory

if TYPE_CHECKING:
    from dra_pipeline.evaluation.worst_case import Step

log = logging.getLogger(__name__)

# train()'s keyword arguments that are shorthands for one config field each (`--set FIELD=VALUE`)
TRAIN_KNOBS = {
    "device": "train.device",
    "seed": "train.seed",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "dra_weight": "dra.weight",
    "online_teacher": "dra.online_teacher",
}


def extract(
    teacher: str,
    *,
    data: str | None = None,
    out: str | Path | None = None,
    n: int | None = None,
    device: str = "auto",
    data_dir: str | Path | None = None,
    progress: ProgressFactory | None = None,
    **settings,
):
    """Run a frozen diffusion teacher once over every image and write its pooled features into a feature store.

    teacher: a registered name (`dra-pipeline teacher list`); data: the real image source (default: the teacher's
    training set); out: the store (default cache/<dataset>.zarr); n: only the first n rows (a trial store).
    Further settings as `extract`'s options (checkpoint, synthetic, layer, sigma, t, views, zero_channels, seed,
    teacher_labels, batch_size, workers, rows_per_shard, dtype, overwrite). Calling it again resumes.
    Returns an Extracted: .store (path), .rows, .views, .dim, .missing (shards still to do).

    >>> import dra_pipeline as d
    >>> d.extract("edm-fmnist", n=1024).store
    PosixPath('cache/fashion-mnist.zarr')
    """
    from dra_pipeline.jobs.extract import ExtractSettings, run_extract

    synthetic, views = settings.get("synthetic", ()), settings.get("views", ("clean",))
    settings["synthetic"] = (synthetic,) if isinstance(synthetic, str | Path) else tuple(synthetic)  # one or several
    settings["views"] = tuple(views.split(",")) if isinstance(views, str) else tuple(views)  # "clean,flip" or a list
    out = Path(out) if out is not None else None
    s = ExtractSettings(teacher, data=data, out=out, n=n, device=device, **settings)
    return run_extract(s, data_dir=data_dir, progress=progress)


def train_config(
    features: str | Path | None = None, *, config: str | None = None, sets: Sequence[str] = (), **knobs
) -> tuple:
    """(Config, preset name or None) that train() would run: `config` (a preset name or YAML file; default: the
    preset the store implies, said in one log line), then `sets` ("section.key=value"), then the knobs
    (TRAIN_KNOBS: device, seed, epochs, lr, batch_size, dra_weight, online_teacher; None leaves a field alone)."""
    from dra_pipeline.config import load_config
    from dra_pipeline.presets import recipe_config

    unknown = sorted(set(knobs) - set(TRAIN_KNOBS))
    if unknown:
        raise TypeError(f"unknown training settings {unknown}; choose from {', '.join(TRAIN_KNOBS)}")
    extra = (*sets, *(f"{TRAIN_KNOBS[k]}={v}" for k, v in knobs.items() if v is not None))
    if config is None and features is not None:
        cfg, preset, why = recipe_config(features, extra)
        log.info(why)
        return cfg, preset
    return load_config(config, extra), config


def train(
    features: str | Path | None = None,
    *,
    config: str | None = None,
    out: str | Path | None = None,
    sets: Sequence[str] = (),
    device: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    dra_weight: float | None = None,
    online_teacher: bool = False,
    data_dir: str | Path | None = None,
    progress: ProgressFactory | None = None,
) -> Path:
    """Adversarial training (TRADES, the DM-AT recipe) with the DRA alignment loss; returns the run directory.

    features: a store from extract() (it names the data; without `config` it also picks the preset, DRA on);
    none trains the plain baseline of `config`. sets: config overrides ("train.lr=0.2"); device ("auto", "cpu",
    "cuda"), seed, epochs, lr (peak), batch_size (global), dra_weight (lambda, 0 = baseline) and online_teacher
    are shorthands for their config fields. out: the run directory (default runs/<preset>). Calling it again
    resumes; the run holds config.yaml, stats.jsonl, metrics.csv, curves.png, last.pt and best-ema.pt.

    >>> import dra_pipeline as d
    >>> d.train("cache/fashion-mnist.zarr", epochs=1, out="runs/trial")
    PosixPath('runs/trial')
    """
    from dra_pipeline.jobs.train import run_training

    knobs = dict(device=device, seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, dra_weight=dra_weight)
    cfg, preset = train_config(features, config=config, sets=sets, online_teacher=online_teacher or None, **knobs)
    out = Path(out) if out is not None else Path("runs") / (Path(preset).stem if preset else "train")
    run_training(cfg, features=Path(features) if features else None, out=out, data_dir=data_dir, progress=progress)
    return out


def evaluate(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    attack: str = "autoattack",
    eps: float | None = None,
    n: int | None = None,
    eps_grid: Sequence[float] | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: Callable[[Step], None] | None = None,
    **settings,
):
    """Clean and robust accuracy (per-point worst case over `attack`, AutoAttack standard by default) of a run's
    best EMA checkpoint (default: the newest run under runs/), or of `checkpoint`, with 95 % intervals.

    eps: radius, pixels in [0, 1] (default: the eps it trained at); n: the first n test images (default: all);
    eps_grid: also the accuracy at these radii (PGD-20 for L-inf), into the reports and <out stem>-eps-grid.png.
    Further settings as `evaluate`'s options (norm, split, data, preprocessing, selection, subset, batch_size,
    seed, sanity, model_info). Writes report.json and report.md (default: beside the checkpoint); calling it again
    resumes. Returns a Written: .report (the report.json dict), .json, .markdown, .evaluation.

    >>> import dra_pipeline as d
    >>> d.evaluate("runs/trial", n=100, attack="apgd-ce").report["robust"]["accuracy"]
    0.57
    """
    from dra_pipeline.checkpoints import resolve_checkpoint
    from dra_pipeline.devices import resolve_device
    from dra_pipeline.jobs.evaluate import EvaluationSettings, evaluate_checkpoint

    grid = tuple(eps_grid) if eps_grid is not None else None
    request = EvaluationSettings(attack=attack, eps=eps, n=n, eps_grid=grid, **settings)
    request.check()
    path = resolve_checkpoint(run=run, checkpoint=checkpoint)
    dev = resolve_device(device)
    return evaluate_checkpoint(path, request, device=dev, out=out, data_dir=data_dir, progress=progress)


def load_store(path: str | Path):
    """Open a feature store read-only: .read(rows) -> (n, views, dim) features, .labels, .provenance, .sources.

    >>> import dra_pipeline as d
    >>> d.load_store("cache/fashion-mnist.zarr").read([0, 1]).shape
    (2, 1, 256)
    """
    from dra_pipeline.cache import FeatureStore

    return FeatureStore.open(path)


def load_classifier(checkpoint: str | Path, device: str = "cpu"):
    """The EMA classifier of a train checkpoint (best-ema.pt or last.pt), or of a run directory's best-ema.pt, in
    eval mode on `device`: .model (inputs (N, C, H, W) in [0, 1] -> logits), .info (name, dataset, eps, ...).

    >>> import dra_pipeline as d
    >>> d.load_classifier("runs/trial").model(images).argmax(1)
    """
    from dra_pipeline.checkpoints import load_classifier as load
    from dra_pipeline.checkpoints import resolve_checkpoint
    from dra_pipeline.devices import resolve_device

    path = Path(checkpoint)
    path = resolve_checkpoint(run=path, checkpoint=None) if path.is_dir() else path
    return load(path, resolve_device(device))
