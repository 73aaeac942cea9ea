"""Stage one's wiring: a teacher name and image sources in, a complete (or resumable) feature store out.

Opens the real source (the teacher's training set unless another is named) and any synthetic npz files, builds
the teacher, resolves the channels to zero, creates the store or resumes the one made with the same settings, and
fills this process's shards (rank r of W owns shards r, r + W, ...) with `stages.extract`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.cache import FeatureStore
from dra_pipeline.data import open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.distributed import barrier, setup, teardown
from dra_pipeline.errors import DraError
from dra_pipeline.jobs import ProgressFactory
from dra_pipeline.stages.extract import extract
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.massive import resolve_zero_channels

NAMED_STORES = ("fashion-mnist", "cifar10", "cifar100")  # named datasets: the store is cache/<name>.zarr


@dataclass(frozen=True)
class ExtractSettings:
    """Everything `extract` is told; defaults are the command line's."""

    teacher: str
    checkpoint: Path | None = None  # teacher weights other than the default
    data: str | None = None  # real image source (default: the teacher's training set)
    synthetic: tuple[str, ...] = ()  # DM-AT npz files appended after the real rows
    out: Path | None = None  # store path (default: cache/<dataset>.zarr)
    layer: str | None = None  # module whose output is pooled (default: the teacher's)
    sigma: float | None = None  # noise std of sigma-parameterised teachers (EDM), images in [-1, 1]
    t: float | None = None  # timestep of timestep-parameterised teachers (DDPM/DiT steps; LightningDiT in [0, 1])
    views: tuple[str, ...] = ("clean",)  # clean, flip, extra-sigma
    zero_channels: str = "none"  # auto, none, or a comma list of channels
    seed: int = 0  # row r's noise comes from (seed, r)
    teacher_labels: str = "true"  # a conditional teacher is told each image's label, or class 0 ("fixed")
    batch_size: int = 256
    workers: int = 1  # threads decoding images
    rows_per_shard: int = 4096
    dtype: str = "float16"
    limit: int | None = None  # only the first N rows (a trial store)
    overwrite: bool = False  # replace a store made with other settings
    device: str = "auto"


@dataclass(frozen=True)
class Extracted:
    store: Path
    rows: int
    views: tuple[str, ...]
    dim: int
    shards_written: int
    missing: int  # shards still missing (0: complete)
    rank: int  # this process's rank (only rank 0 reports)


def run_extract(
    s: ExtractSettings,
    *,
    data_dir=None,
    progress: ProgressFactory | None = None,
) -> Extracted:
    """Fill the store `s` describes; rerunning resumes. progress(total_rows, label) gives a context whose value is
    called with the rows finished (only rank 0 is given one)."""
    spec = teacher_spec(s.teacher)
    if s.sigma is not None and spec.noise_kind != "sigma":
        raise DraError(f"{spec.name} is told a timestep: use --t, not --sigma")
    if s.t is not None and spec.noise_kind != "t":
        raise DraError(f"{spec.name} is told a noise std: use --sigma, not --t")
    if s.workers < 1:
        raise DraError(f"--workers must be at least 1 (got {s.workers})")
    dist = setup(s.device)
    rank, world, device = dist.rank, dist.world, str(dist.device)

    real = open_source(s.data or spec.dataset, data_dir=data_dir)
    images = IndexedImages([real, *(open_source(p) for p in s.synthetic)])
    out = s.out or Path("cache") / f"{store_name(real)}.zarr"
    noise = s.sigma if s.t is None else (int(s.t) if float(s.t).is_integer() else s.t)
    teacher = create_teacher(s.teacher, checkpoint=s.checkpoint, layer=s.layer, noise=noise, seed=s.seed, device=device)
    rows = len(images) if s.limit is None else min(s.limit, len(images))
    teacher.set_zero_channels(resolve_zero_channels(s.zero_channels, teacher, images))
    first_image, first_label = images.read(np.arange(1))
    dim = teacher(first_image, first_label, np.arange(1)).shape[-1]  # the layer's width, whatever the spec says
    autocast = dist.device.type == "cuda"
    if autocast:
        teacher.to(memory_format=torch.channels_last)
    meta = {
        **teacher.provenance(s.views),
        "batch_size": s.batch_size,
        "teacher_labels": s.teacher_labels if spec.label_dim else "none (unconditional)",
        "precision": "bf16-autocast" if autocast else "fp32",
    }
    create_kw = dict(
        sources=images.describe(),
        labels=images.labels[:rows],
        views=s.views,
        dim=dim,
        meta=meta,
        dtype=s.dtype,
        rows_per_shard=s.rows_per_shard,
        limit=s.limit,
    )
    if rank == 0:
        store = FeatureStore.create_or_resume(out, overwrite=s.overwrite, **create_kw)
    barrier(dist)
    if rank != 0:
        store = FeatureStore.open(out, mode="r+")
    owned = range(rank, store.layout.num_shards, world)
    todo_rows = sum(np.diff(store.layout.shard_rows(k))[0] for k in store.missing_shards() if k in set(owned))
    label = f"extract {spec.name}" + (f" rank {rank}" if world > 1 else "")
    bar = progress(int(todo_rows), label) if progress is not None and rank == 0 else nullcontext(None)
    with bar as update:
        written = extract(
            teacher,
            images,
            store,
            views=s.views,
            batch_size=s.batch_size,
            shards=owned,
            autocast=autocast,
            workers=s.workers,
            teacher_labels=s.teacher_labels,
            progress=update,
        )
    barrier(dist)  # every rank's shards are written before rank 0 reports
    teardown(dist)
    missing = len(FeatureStore.open(out).missing_shards()) if rank == 0 else -1
    return Extracted(out, store.layout.rows, tuple(s.views), dim, len(written), missing, rank)


def store_name(source) -> str:
    """The default store name of a real source: a named dataset's name, else the file or folder name."""
    return source.spec.kind if source.spec.kind in NAMED_STORES else Path(source.spec.path).stem
