"""`dra-pipeline extract`: stage one from the command line (teacher, data, store, torchrun ranks)."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR


def _views(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


@click.command("extract")
@click.option("--teacher", "teacher_name", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Teacher weights (default: the spec's path).")
@click.option("--data", "data_text", help="Real image source (default: the teacher's training set, train split).")
@click.option("--synthetic", multiple=True, help="DM-AT synthetic .npz files appended after the real rows.")
@DATA_DIR
@click.option("--out", type=click.Path(path_type=Path), help="Store path (default: cache/<dataset>.zarr).")
@click.option("--layer", help="Module whose output is pooled (default: the teacher's).")
@click.option("--sigma", type=float, help="Noise std for sigma-parameterised teachers (EDM), images in [-1, 1].")
@click.option(
    "--t",
    "timestep",
    type=float,
    help="Timestep for timestep-parameterised teachers: DDPM/DiT steps; LightningDiT t in [0, 1], 1 = clean.",
)
@click.option("--views", default="clean", show_default=True, help="Comma list of clean, flip, extra-sigma.")
@click.option("--zero-channels", default="none", show_default=True, help="auto, none, or a comma list of channels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds each row's noise with (seed, row).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Threads decoding images (raise it for JPEG folders such as ImageNet).",
)
@click.option("--rows-per-shard", type=int, default=4096, show_default=True)
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option(
    "--device", default=None, help="cpu or cuda[:i] (default: cuda if available; under torchrun, the local GPU)."
)
@click.option("--limit", type=int, help="Only the first N rows (a smaller store, for trials).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store made with other settings.")
def extract(
    teacher_name,
    checkpoint,
    data_text,
    synthetic,
    data_dir,
    out,
    layer,
    sigma,
    timestep,
    views,
    zero_channels,
    seed,
    batch_size,
    workers,
    rows_per_shard,
    dtype,
    device,
    limit,
    overwrite,
):
    """Run a frozen teacher once over every image and write pooled features into a sharded Zarr store.

    Rerunning the same command resumes. Under torchrun, rank r fills shards r, r+W, r+2W, ...
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.distributed import barrier, setup, teardown
    from dra_pipeline.errors import DraError
    from dra_pipeline.stages.extract import extract as run_extract
    from dra_pipeline.teachers import create_teacher, teacher_spec
    from dra_pipeline.teachers.massive import resolve_zero_channels

    spec = teacher_spec(teacher_name)
    if sigma is not None and spec.noise_kind != "sigma":
        raise DraError(f"{spec.name} is told a timestep: use --t, not --sigma")
    if timestep is not None and spec.noise_kind != "t":
        raise DraError(f"{spec.name} is told a noise std: use --sigma, not --t")
    if workers < 1:
        raise DraError(f"--workers must be at least 1 (got {workers})")
    dist = setup(device or "auto")
    rank, world, device = dist.rank, dist.world, str(dist.device)
    if device == "cpu":
        torch.set_flush_denormal(True)

    real = open_source(data_text or spec.dataset, data_dir=data_dir)
    images = IndexedImages([real, *(open_source(p) for p in synthetic)])
    out = out or Path("cache") / f"{_dataset_name(real)}.zarr"
    views = _views(views)
    noise = sigma if timestep is None else (int(timestep) if timestep.is_integer() else timestep)
    teacher = create_teacher(teacher_name, checkpoint=checkpoint, layer=layer, noise=noise, seed=seed, device=device)
    rows = len(images) if limit is None else min(limit, len(images))
    teacher.set_zero_channels(resolve_zero_channels(zero_channels, teacher, images))
    first_image, first_label = images.read(np.arange(1))
    dim = teacher(first_image, first_label, np.arange(1)).shape[-1]  # the layer's width, whatever the spec says
    autocast = device.startswith("cuda")
    if autocast:
        teacher.to(memory_format=torch.channels_last)
    meta = {**teacher.provenance(views), "batch_size": batch_size, "precision": "bf16-autocast" if autocast else "fp32"}

    create_kw = dict(
        sources=images.describe(),
        labels=images.labels[:rows],
        views=views,
        dim=dim,
        meta=meta,
        dtype=dtype,
        rows_per_shard=rows_per_shard,
        limit=limit,
    )
    if rank == 0:
        store = FeatureStore.create_or_resume(out, overwrite=overwrite, **create_kw)
    barrier(dist)
    if rank != 0:
        store = FeatureStore.open(out, mode="r+")
    owned = range(rank, store.layout.num_shards, world)
    todo_rows = sum(np.diff(store.layout.shard_rows(k))[0] for k in store.missing_shards() if k in set(owned))
    with tqdm(
        total=int(todo_rows),
        desc=f"extract {spec.name}" + (f" rank {rank}" if world > 1 else ""),
        unit="img",
        disable=rank != 0,
        mininterval=1,
    ) as bar:
        written = run_extract(
            teacher,
            images,
            store,
            views=views,
            batch_size=batch_size,
            shards=owned,
            autocast=autocast,
            workers=workers,
            progress=bar.update,
        )
    barrier(dist)  # every rank's shards are written before rank 0 reports
    teardown(dist)
    if rank == 0:
        missing = FeatureStore.open(out).missing_shards()
        state = "complete" if not missing else f"{len(missing)} shards missing: rerun to resume"
        click.echo(
            f"{out}: {store.layout.rows} rows x {len(views)} views x {dim}, wrote {len(written)} shards, {state}"
        )


def _dataset_name(source) -> str:
    return (
        source.spec.kind
        if source.spec.kind in ("fashion-mnist", "cifar10", "cifar100")
        else Path(source.spec.path).stem
    )
