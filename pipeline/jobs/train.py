"""Stage two's wiring: a config and a feature store in, a run directory out.

Opens the store (the manifest: its first source is the real training set, further sources are synthetic DM-AT
npz files) and its sources (a trial store, extract --n: the rows it covers), splits off the validation rows,
chooses the input normalisation (published, or computed from the training rows), builds the batch plan, the model
(its model_info records the dataset by name and fingerprint, the normalisation and any trial) and the training
state, creates or resumes the run directory, and runs `stages.train` under torchrun or alone. No teacher is
imported or built unless cfg.dra.online_teacher asks for one.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from dra_pipeline import checkpoints
from dra_pipeline.atomic import check_writable
from dra_pipeline.cache import FeatureStore
from dra_pipeline.data import NAMED, SourceSpec, dataset_name, open_source, source_kind
from dra_pipeline.data.batches import BatchLoader, BatchPlan, center_crop, target_views, validation_rows
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.data.statistics import channel_statistics
from dra_pipeline.distributed import barrier, broadcast, setup, teardown
from dra_pipeline.errors import DraError
from dra_pipeline.jobs import ProgressFactory
from dra_pipeline.lock import exclusive
from dra_pipeline.losses import ProjectionHead
from dra_pipeline.models import choose_normalisation, create_model
from dra_pipeline.run_dir import RunDir, recorded_config
from dra_pipeline.stages.train import build_state, channels_last, train

log = logging.getLogger(__name__)


RUN_LOCK_WAIT_S = 10.0  # seconds a second training of one run directory waits for the first before refusing


def run_training(cfg, *, features: Path | None, out: Path, data_dir=None, progress: ProgressFactory | None = None):
    """Assemble stage two from a config: data (from the store's sources, or cfg.data), model, run directory.

    The store's first source is the real training set; any further sources are synthetic (DM-AT npz). No
    teacher is imported or built unless cfg.dra.online_teacher asks for one.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DraError(f"--out {out} is a file; a run directory is a folder: choose another --out")
    check_writable(out, "run directory")
    dist = setup(cfg.train.device)
    device = dist.device
    if device.type == "cuda":  # fp32 as DM-AT trains, with TF32 matmuls and convolutions (its PyTorch's default)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if cfg.train.batch_size % dist.world:
        raise DraError(
            f"train.batch_size {cfg.train.batch_size} is the global batch: it must divide evenly over "
            f"{dist.world} processes"
        )
    store, identity = None, None
    if features is not None:
        store = FeatureStore.open(features)
        missing = store.missing_shards()
        if missing:
            raise DraError(f"{features}: {len(missing)} shards are not extracted yet; finish `extract` first")
        check_dataset(cfg.data.dataset, store.sources[0], features)
        sources = [open_source(SourceSpec.from_dict(s), data_dir=data_dir) for s in store.sources]
        store.check({"sources": [s.describe() for s in sources]})
        identity = store.identity()
        check_same_store(out, identity, features)
    else:
        sources = [open_source(cfg.data.dataset, data_dir=data_dir), *(open_source(p) for p in cfg.data.synthetic)]
    images = IndexedImages(sources)
    real = sources[0]
    # a trial store (extract --n) covers the first rows only: train and validate on those
    covered = len(images) if store is None else store.layout.rows
    trial = {"rows": covered, "of": len(images)} if covered < len(images) else None
    n_real = min(len(real), covered)
    dataset = dataset_name(real.spec)  # a named dataset, or the folder's own name: never another dataset's
    labels = real.labels[:n_real]
    val_rows = validation_rows(
        labels, cfg.data.validation, cfg.data.validation_rows, class_sorted=real.spec.kind not in NAMED
    )
    check_classes(labels, val_rows, trial, log.warning if dist.rank == 0 else None)
    real_rows = np.setdiff1d(np.arange(n_real), val_rows)
    synthetic_rows = np.arange(len(real), max(len(real), covered))
    if trial and dist.rank == 0:
        log.info(
            f"trial run: {features} covers {covered:,} of {len(images):,} rows (extract --n); training on "
            f"{len(real_rows):,} of them, validating on {len(val_rows):,}"
        )
    if cfg.data.synthetic_fraction > 0 and not len(synthetic_rows):
        raise DraError("data.synthetic_fraction > 0 but there are no synthetic images (extract with --synthetic)")

    use_dra = cfg.dra.weight > 0
    if use_dra and store is None:
        raise DraError("DRA needs teacher features: pass --features STORE (from `extract`), or use --lambda 0")
    # a named dataset's published normalisation, or one computed once over the training rows (resumes read it back)
    norm = (
        recorded_normalisation(out)
        or choose_normalisation(cfg.data.normalisation, dataset)
        or channel_statistics(real, real_rows)
    )
    steps_per_epoch = -(-(cfg.data.epoch_images or len(real_rows)) // cfg.train.batch_size)
    plan = BatchPlan(
        real_rows,
        synthetic_rows,
        batch_size=cfg.train.batch_size,
        synthetic_fraction=cfg.data.synthetic_fraction,
        steps_per_epoch=steps_per_epoch,
        seed=cfg.train.seed,
    )
    loader = BatchLoader(
        plan,
        images,
        store=store if use_dra else None,
        extra_sigma=cfg.dra.extra_sigma,
        padding=cfg.data.crop_padding,
        flip=cfg.data.flip,
        rotation=cfg.data.rotation,
        crop_size=cfg.data.crop_size,
        rank=dist.rank,
        world=dist.world,
        workers=cfg.data.workers,
    )

    torch.manual_seed(cfg.train.seed)
    h, w, c = images.image_shape
    h, w = (cfg.data.crop_size, cfg.data.crop_size) if cfg.data.crop_size else (h, w)
    model_info = {
        "name": cfg.model.name,
        "dataset": dataset,
        "dataset_fingerprint": real.fingerprint(),
        "normalisation": norm,
        "num_classes": real.num_classes,
        "in_channels": c,
        "image_size": [h, w],
        "eps": cfg.attack.eps,
        **({"trial": trial} if trial else {}),
    }
    model = create_model(
        cfg.model.name,
        dataset=dataset,
        num_classes=real.num_classes,
        in_channels=c,
        normalisation=norm,
        checkpoint=cfg.model.checkpoint or None,
    ).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    state = build_state(cfg, model, store.layout.dim if use_dra else None, steps_per_epoch, model_info=model_info)
    if state.head is not None:
        state.head.to(device)
    run = RunDir(out)
    config = {
        **cfg.to_dict(),
        "features": str(features) if features else None,
        "store_identity": identity,  # a resume must read the same store (check_same_store)
        "dataset": {"name": dataset, "fingerprint": model_info["dataset_fingerprint"]},
        "normalisation": norm,  # computed once: a resumed run reads it back (recorded_normalisation)
        "trial": trial,  # {rows, of}: trained on the first `rows` rows of a trial store (extract --n)
    }
    # one training per run directory: a second one on the same --out is refused (rank 0 holds the lock)
    guard = exclusive(out, wait_s=RUN_LOCK_WAIT_S, what="training run") if dist.rank == 0 else nullcontext()
    with guard:
        resume = run.start(config, device=str(device)) if dist.rank == 0 else None
        barrier(dist)  # rank 0 has created (or checked) the run directory
        if dist.rank != 0:
            resume = run.start(config)
        if resume:
            saved = run.load(checkpoints.LAST, device)
            head = saved["head"]
            if head is not None and use_dra and ProjectionHead.target_dim(head) != store.layout.dim:
                raise DraError(
                    f"{out}: the DRA head was trained for {ProjectionHead.target_dim(head)}-d features but "
                    f"{features} holds {store.layout.dim}-d features; use the original store"
                )
            state.load_state_dict(saved)
            if dist.rank == 0:
                run.reconcile_stats(saved.get("stats"))
            if dist.rank == 0:
                log.info(f"resuming {out} after epoch {state.epoch}")
        for module in (state.model, state.head) if state.head is not None else (state.model,):
            broadcast(dist, module.state_dict().values())  # every rank starts from rank 0's weights
        step_model = torch.compile(state.model) if cfg.train.compile else state.model
        online = online_teacher(store, images, device, cfg.dra.extra_sigma) if cfg.dra.online_teacher else None
        val_images, val_labels = center_crop(real.read(val_rows), cfg.data.crop_size), real.labels[val_rows]
        val = (torch.from_numpy(val_images).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(val_labels))
        total = (cfg.train.epochs - state.epoch) * steps_per_epoch
        bar = progress(total, "train", "step") if progress is not None and dist.rank == 0 else nullcontext(None)
        with bar as update:
            try:
                train(
                    cfg,
                    state,
                    loader,
                    run,
                    val=val,
                    dist=dist,
                    model=step_model,
                    progress=update,
                    online_targets=online,
                )
                barrier(dist)
            finally:
                teardown(dist)
    if dist.rank == 0:
        log.info(
            f"done: {out} (best EMA validation PGD-{cfg.attack.val_steps} accuracy {state.best_robust:.3f}, "
            f"n={len(val_rows)})"
        )
    return state


def check_dataset(dataset: str, real: dict, features: Path) -> None:
    """The config's data.dataset must name the store's real source: the same named dataset and split, or the same
    kind of file or folder (its path may differ: data moves between machines, fingerprints guard the content)."""
    kind, split = source_kind(dataset)
    if kind == real["kind"] and (kind not in NAMED or split == real.get("split")):
        return
    have = f"{real['kind']}:{real.get('split')}" if real["kind"] in NAMED else f"{real['kind']}:{real['path']}"
    raise DraError(
        f"the config's data.dataset is {dataset!r} but {features} was extracted from {have}; "
        f"pass the matching --config or --set data.dataset={have.removesuffix(':train')}"
    )


def check_same_store(out: Path, identity: str, features: Path) -> None:
    """A run resumes only on the store it started on: refuse when out/config.yaml records another store identity."""
    recorded = recorded_config(out)  # {} when there is no run yet (or not a run: RunDir says so)
    if recorded.get("store_identity") not in (None, identity):
        raise DraError(
            f"{out} was trained on a store with identity {recorded['store_identity']} but {features} now holds "
            f"{identity} (re-extracted or replaced since); resume on the original store, or choose another --out"
        )


def check_classes(labels: np.ndarray, val_rows: np.ndarray, trial: dict | None, warn) -> None:
    """Refuse training rows of a single class and a validation split of one class (best-checkpoint selection would
    mean nothing); `warn` (when given) is told of a split that misses some classes."""
    present, held = np.unique(labels), np.unique(labels[val_rows])
    if len(present) < 2:
        why = " (a trial store, extract --n, holds a class-sorted source's first rows)" if trial else ""
        raise DraError(f"the {len(labels):,} training rows hold a single class ({present[0]}){why}; use more rows")
    if len(held) < 2:
        raise DraError(
            f"the {len(val_rows)} validation rows hold {len(held)} of the {len(present)} classes; best-checkpoint "
            "selection would mean nothing: set data.validation_rows=spread or raise data.validation"
        )
    if len(held) < len(present) and warn is not None:
        warn(f"the {len(val_rows)} validation rows hold {len(held)} of the {len(present)} classes")


def recorded_normalisation(out: Path) -> dict | None:
    """The normalisation out/config.yaml records (a run resumes with the one it started with), or None."""
    norm = recorded_config(out).get("normalisation")
    return norm if isinstance(norm, dict) and {"mean", "std"} <= norm.keys() else None


def online_teacher(store, images, device, extra_sigma: str = "add"):
    """The comparison mode: a function (rows, flipped) -> targets (n, K, dim) computed by the store's teacher now,
    the same views the cached targets would be read from.

    The teacher is rebuilt from the store's provenance and must have the same weights (checkpoint hash) and width.
    """
    from dra_pipeline.teachers import teacher_from_provenance  # only here: cached training never imports teachers
    from dra_pipeline.teachers.base import told_labels

    if store is None:
        raise DraError("--online-teacher needs --features: the store names the teacher, layer and noise to use")
    teacher = teacher_from_provenance(store.provenance, device=str(device), where=str(store.path))
    probe_rows = np.arange(1)
    width = teacher(*images.read(probe_rows), probe_rows).shape[-1]
    if width != store.layout.dim:
        raise DraError(
            f"the teacher gives {width}-d features but the store (and the DRA head) expect {store.layout.dim}"
        )
    views = tuple(store.layout.views)
    plain, mirrored = target_views(list(views), extra_sigma)
    told_as = "fixed" if store.provenance.get("teacher_labels") == "fixed" else "true"

    def targets(rows: np.ndarray, flipped: np.ndarray) -> torch.Tensor:
        pixels, labels = images.read(rows)
        told = told_labels(labels, told_as)  # what the store's teacher was told at extraction
        feats = teacher(pixels, told, rows, views=views)  # (n, views, dim) of the un-augmented image
        pick = torch.as_tensor(np.where(flipped[:, None], mirrored, plain))
        return feats[torch.arange(len(rows))[:, None], pick]

    return targets
