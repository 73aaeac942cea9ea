"""Stage one's wiring: a teacher name and image sources in, a complete (or resumable) feature store out.

Checks the settings, opens the real source (the teacher's training set unless another is named) and any synthetic
npz files, builds the teacher and runs it once with the requested views (so bad settings fail before any store is
touched), resolves the channels to zero, then, holding the store's lock, creates the store or resumes the one made
with the same settings (re-hashing its done shards and rewriting any that differ from their records), fills this
process's shards (rank r of W owns shards r, r + W, ...) with `stages.extract`, and swaps in a complete
replacement made with `--overwrite`.
"""

from __future__ import annotations

import math
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.atomic import check_writable
from dra_pipeline.cache import FeatureStore
from dra_pipeline.cache.store import DTYPES, check_target
from dra_pipeline.data import NAMED, dataset_name, open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.distributed import barrier, setup, teardown
from dra_pipeline.errors import DraError
from dra_pipeline.jobs import ProgressFactory
from dra_pipeline.stages.extract import extract
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.base import TEACHER_LABELS, VIEWS
from dra_pipeline.teachers.massive import resolve_zero_channels


@dataclass(frozen=True)
class ExtractSettings:
    """Everything `extract` is told; defaults are the command line's."""

    teacher: str
    checkpoint: Path | None = None  # teacher weights other than the default
    data: str | None = None  # real image source (default: the teacher's training set)
    synthetic: tuple[str, ...] = ()  # DM-AT npz files appended after the real rows
    out: Path | None = None  # store path (default: cache/<store_name>.zarr)
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
    n: int | None = None  # only the first N rows (a trial store; the store records it as its limit)
    overwrite: bool = False  # replace a store made with other settings (once the new one is complete)
    device: str = "auto"

    def check(self) -> None:
        """Refuse settings that cannot run, before any data is opened or anything written (one line each)."""
        if not self.views:
            raise DraError(f"--views names no view; choose from {', '.join(VIEWS)}")
        twice = sorted({v for v in self.views if self.views.count(v) > 1})
        if twice:
            raise DraError(f"--views names {', '.join(twice)} more than once; name each view once")
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown:
            raise DraError(f"unknown view(s) {', '.join(unknown)} in --views; choose from {', '.join(VIEWS)}")
        if self.sigma is not None and not 0 < self.sigma < math.inf:
            raise DraError(f"--sigma must be a positive finite noise std (got {self.sigma})")
        if self.t is not None and not 0 <= self.t < math.inf:
            raise DraError(f"--t must be a finite timestep >= 0 (got {self.t})")
        for option, value, least in (
            ("--batch-size", self.batch_size, 1),
            ("--rows-per-shard", self.rows_per_shard, 1),
            ("--workers", self.workers, 1),
            ("--seed", self.seed, 0),
            ("--n", 1 if self.n is None else self.n, 1),
        ):
            if value < least:
                raise DraError(f"{option} must be at least {least} (got {value})")
        if self.teacher_labels not in TEACHER_LABELS:
            raise DraError(f"--teacher-labels must be one of {', '.join(TEACHER_LABELS)} (got {self.teacher_labels!r})")
        if self.dtype not in DTYPES:
            raise DraError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")


@dataclass(frozen=True)
class Extracted:
    store: Path
    rows: int
    views: tuple[str, ...]
    dim: int
    shards_written: int
    missing: int  # shards still missing (0: complete)
    rank: int  # this process's rank (only rank 0 reports)
    repaired: int = 0  # done shards whose files differed from their records, extracted again


def run_extract(
    s: ExtractSettings,
    *,
    data_dir=None,
    progress: ProgressFactory | None = None,
) -> Extracted:
    """Fill the store `s` describes; rerunning resumes. progress(total_rows, label) gives a context whose value is
    called with the rows finished (only rank 0 is given one)."""
    s.check()
    spec = teacher_spec(s.teacher)
    if s.sigma is not None and spec.noise_kind != "sigma":
        raise DraError(f"{spec.name} is told a timestep: use --t, not --sigma")
    if s.t is not None and spec.noise_kind != "t":
        raise DraError(f"{spec.name} is told a noise std: use --sigma, not --t")
    dist = setup(s.device)
    rank, world, device = dist.rank, dist.world, str(dist.device)

    real = open_source(s.data or spec.dataset, data_dir=data_dir)
    images = IndexedImages([real, *(open_source(p) for p in s.synthetic)])
    out = s.out or Path("cache") / f"{store_name(real)}.zarr"
    check_target(out)  # a path that is not a store is never written, with or without --overwrite
    check_writable(out, "store")
    noise = s.sigma if s.t is None else (int(s.t) if float(s.t).is_integer() else s.t)
    teacher = create_teacher(s.teacher, checkpoint=s.checkpoint, layer=s.layer, noise=noise, seed=s.seed, device=device)
    rows = len(images) if s.n is None else min(s.n, len(images))
    teacher.set_zero_channels(resolve_zero_channels(s.zero_channels, teacher, images))
    first_image, first_label = images.read(np.arange(1))
    probe = teacher(first_image, first_label, np.arange(1), views=s.views)  # every view, before any store is touched
    if not torch.isfinite(probe).all():
        raise DraError(f"{spec.name} gives NaN or Inf features at noise {teacher.noise:g}; check --sigma / --t")
    dim = probe.shape[-1]  # the layer's width, whatever the spec says
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
        limit=s.n,
    )
    repaired: list[int] = []
    with FeatureStore.writer(out) if rank == 0 else nullcontext():  # a second extract of `out` waits or refuses
        if rank == 0:
            store = FeatureStore.create_or_resume(out, overwrite=s.overwrite, **create_kw)
            repaired = store.repair(create_kw["labels"])  # a damaged done shard is extracted again
        barrier(dist)
        if rank != 0:
            store = FeatureStore.open_for_writing(out, **create_kw)
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
        missing = -1
        if rank == 0:
            missing = len(FeatureStore.open(store.path).missing_shards())
            if not missing:
                store = store.publish()  # a replacement made with --overwrite takes the old store's place
    return Extracted(store.path, store.layout.rows, tuple(s.views), dim, len(written), missing, rank, len(repaired))


def store_name(source) -> str:
    """The default store name of a real source, from its dataset identity: a named dataset's name ("cifar10"), else
    the folder's or file's parent and own name ("cifar10-jpeg-train"), with its decoding options ("-size256"); a named
    dataset's split other than train is named too ("cifar10-test")."""
    name = dataset_name(source.spec).replace("/", "-")
    if source.spec.kind in NAMED and source.spec.split != "train":
        name += f"-{source.spec.split}"
    options = "".join(f"-{k}{v}" for k, v in sorted(source.spec.options.items()))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name + options).lstrip(".-") or "images"
