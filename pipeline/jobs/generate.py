"""Synthetic data's wiring: an EDM-family teacher and an output path in, a DM-AT npz file out (resumable)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from dra_pipeline.atomic import check_writable
from dra_pipeline.data.npz_writer import ChunkedNpzWriter
from dra_pipeline.devices import resolve_device
from dra_pipeline.errors import DraError
from dra_pipeline.jobs import ProgressFactory
from dra_pipeline.stages import generate as stage
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.songunet import EDMDenoiser


def generate_file(
    denoiser: EDMDenoiser,
    out: Path,
    *,
    count: int,
    seed: int,
    steps: int = 18,
    batch_size: int = 100,
    chunk_size: int = stage.CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """`count` images of `denoiser` into the npz `out`, in chunks kept beside it until done; rerun to resume."""
    stage.check_denoiser(denoiser)
    if seed < 0 or count < 1:
        raise DraError(f"need seed >= 0 and count >= 1, got seed={seed}, count={count}")
    cfg = denoiser.cfg
    settings = stage.settings(denoiser, count=count, seed=seed, steps=steps, chunk_size=chunk_size)
    shape = (cfg.img_resolution, cfg.img_resolution, cfg.img_channels)
    writer = ChunkedNpzWriter(out, settings, count=count, chunk_size=chunk_size, shape=shape)
    return stage.generate(denoiser, writer, seed=seed, steps=steps, batch_size=batch_size, progress=progress)


def run_generate(
    teacher: str,
    *,
    checkpoint: Path | None,
    n: int,
    out: Path,
    seed: int,
    steps: int,
    batch_size: int,
    device: str,
    progress: ProgressFactory | None = None,
) -> Path:
    """Sample `n` images from a registered EDM-family teacher (its denoiser) on `device`; progress(total, label)
    gives a context whose value is called with the images finished."""
    spec = teacher_spec(teacher)
    if spec.family != "edm":
        raise DraError(f"{teacher} is a {spec.family} teacher; generate needs an EDM-family one (e.g. edm-fmnist)")
    if Path(out).exists():
        raise DraError(f"{out} already exists; choose another --out or delete it")
    check_writable(Path(out), "npz file")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    built = create_teacher(teacher, checkpoint=checkpoint, device=str(resolve_device(device)))
    with progress(n, "generate") if progress else nullcontext(None) as update:
        return generate_file(
            built.denoiser, Path(out), count=n, seed=seed, steps=steps, batch_size=batch_size, progress=update
        )
