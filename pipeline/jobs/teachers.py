"""The teacher tools' wiring: fit a teacher on a source, probe its layers, find its massive channels.

Each turns names and paths into the library's objects (sources, teachers) and returns what the command prints.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.data import NAMED, open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.devices import resolve_device
from dra_pipeline.errors import DraError
from dra_pipeline.jobs import ProgressFactory
from dra_pipeline.linear_probe import PROBE_WEIGHT_DECAY
from dra_pipeline.seeding import subset_rows
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.fit import FitConfig, fit, network_config
from dra_pipeline.teachers.layer_probe import ProbeTable, probe
from dra_pipeline.teachers.massive import MASSIVE_RATIO, ChannelStat, find_massive_channels, sample_rows


def fit_teacher(
    data: str,
    *,
    out: Path,
    net: str,
    config: FitConfig,
    device: str,
    data_dir=None,
    max_minutes: float | None = None,
    progress: ProgressFactory | None = None,
) -> Path:
    """Train (or resume) a class-conditional EDM SongUNet on `data`; returns OUT/ema.safetensors."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images = IndexedImages([open_source(data, data_dir=data_dir)])
    with progress(config.steps, "teacher fit") if progress else nullcontext(None) as update:
        done = [0]

        def advance(step: int) -> None:  # fit reports the step reached; bars count increments
            if update:
                update(step - done[0])
            done[0] = step

        return fit(
            images, network_config(net, images), config, out, device=str(dev), max_minutes=max_minutes, progress=advance
        )


def test_source(data: str) -> str:
    """The test split matching a named dataset's source text: `X[:train][?opts]` -> `X:test[?opts]`."""
    body, sep, query = data.partition("?")
    name = body.partition(":")[0]
    if name not in NAMED:
        raise DraError(f"{data} is not a named dataset; pass its test images with --test-data")
    return f"{name}:test{sep}{query}"


@dataclass(frozen=True)
class ProbeResult:
    table: ProbeTable
    header: str  # what was probed, on what, with which settings


def probe_teacher(
    name: str,
    *,
    checkpoint: Path | None,
    data: str | None,
    test_data: str | None,
    layers: list[str] | None,
    noises: list[float] | None,
    train_n: int,
    test_n: int,
    seed: int,
    teacher_labels: str,
    batch_size: int,
    device: str,
    data_dir=None,
    progress: ProgressFactory | None = None,
) -> ProbeResult:
    """Linear-probe test accuracy of the teacher's pooled features per layer x noise level, and of raw pixels."""
    spec = teacher_spec(name)
    data = data or spec.dataset
    train, test = (open_source(t, data_dir=data_dir) for t in (data, test_data or test_source(data)))
    images = IndexedImages([train, test])  # test rows follow train rows, so no two images share a noise draw
    train_rows = subset_rows(0, len(train), train_n, seed)
    test_rows = subset_rows(len(train), len(images), test_n, seed)
    teacher = create_teacher(name, checkpoint=checkpoint, seed=seed, device=str(resolve_device(device)))
    with progress(train_n + test_n, "features") if progress else nullcontext(None) as update:
        table = probe(
            teacher,
            images,
            train_rows,
            test_rows,
            layers=layers or [spec.layer],
            noises=noises or [spec.noise],
            batch_size=batch_size,
            teacher_labels=teacher_labels,
            progress=update,
        )
    told = f", teacher told {'the true label' if teacher_labels == 'true' else 'class 0'}" if spec.label_dim else ""
    header = (
        f"{name}: linear probe test accuracy (%), train {train.name} n={table.n_train}, test {test.name} "
        f"n={table.n_test}, seed {seed}, weight decay {PROBE_WEIGHT_DECAY:g}{told}"
    )
    return ProbeResult(table, header)


@dataclass(frozen=True)
class MassiveChannels:
    stats: list[ChannelStat]  # every channel, by mean |activation|, largest first
    header: str
    ratio: float


def massive_channels(
    name: str,
    *,
    checkpoint: Path | None,
    data: str | None,
    layer: str | None,
    sigma: float | None,
    n: int,
    ratio: float | None,
    seed: int,
    device: str,
    data_dir=None,
) -> MassiveChannels:
    """Channels of a layer by mean |activation| over `n` evenly spaced images, flagged above ratio x median."""
    ratio = MASSIVE_RATIO if ratio is None else ratio
    source = open_source(data or teacher_spec(name).dataset, data_dir=data_dir)
    t = create_teacher(
        name, checkpoint=checkpoint, layer=layer, noise=sigma, seed=seed, device=str(resolve_device(device))
    )
    rows = sample_rows(len(source), n)
    stats = find_massive_channels(t, source.read(rows), source.labels[rows], rows, ratio=ratio)
    median = float(np.median([s.mean_abs for s in stats]))
    header = (
        f"{name} {t.layer} {t.spec.noise_kind}={t.noise:g}: {len(stats)} channels, {len(rows)} images of "
        f"{source.name}; median channel mean|a| = {median:.4g}"
    )
    return MassiveChannels(stats, header, ratio)
