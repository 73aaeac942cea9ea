"""`dra-pipeline teacher`: list, fit, convert, probe and inspect diffusion teachers."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR


@click.group()
def teacher():
    """Diffusion teachers: list them, fit one on your data, probe their layers."""


@teacher.command("list")
def teacher_list():
    """Registered teachers with their defaults (layer, noise level, feature width, checkpoint path)."""
    from dra_pipeline.teachers import list_teachers

    click.echo(f"{'name':<20} {'data':<14} {'res':>4} {'layer':<22} {'noise':>10} {'dim':>5}  checkpoint")
    for s in list_teachers():
        noise = f"{s.noise_kind}={s.noise:g}"
        ckpt = s.checkpoint or ("(random weights)" if s.family == "tiny" else "(packaged)")
        click.echo(f"{s.name:<20} {s.dataset:<14} {s.resolution:>4} {s.layer:<22} {noise:>10} {s.dim:>5}  {ckpt}")


@teacher.command("fit")
@click.option("--data", "data_text", default="fashion-mnist", show_default=True, help="Image source to train on.")
@DATA_DIR
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--net", default="small", show_default=True, help="Network size: small (1.75 M) or ddpmpp (55.7 M).")
@click.option("--steps", type=int, default=20_000, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Stop (resumably) after this much wall time.")
def teacher_fit(data_text, data_dir, out, net, steps, batch_size, lr, seed, device, max_minutes):
    """Train a class-conditional EDM SongUNet on a source; rerun the same command to resume.

    Writes OUT/ema.safetensors (usable as --checkpoint of an EDM teacher), OUT/stats.jsonl and OUT/state.pt.
    """
    import torch
    from tqdm import tqdm

    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.teachers.fit import FitConfig, fit, network_config

    if device == "cpu":
        torch.set_flush_denormal(True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images = IndexedImages([open_source(data_text, data_dir=data_dir)])
    cfg = FitConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    with tqdm(total=steps, desc="teacher fit", unit="step", mininterval=2) as bar:
        path = fit(
            images,
            network_config(net, images),
            cfg,
            out,
            device=device,
            max_minutes=max_minutes,
            progress=lambda step: bar.update(step - bar.n),
        )
    click.echo(f"EMA weights: {path}")


@teacher.command("convert")
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.safetensors")
def teacher_convert(pkl: Path, out: Path):
    """Convert an official EDM network pickle to safetensors, once, without executing code from the pickle."""
    from dra_pipeline.teachers.edm_checkpoint import convert_pickle_to_safetensors

    convert_pickle_to_safetensors(pkl, out)
    click.echo(f"wrote {out}")


def _test_source(data_text: str) -> str:
    """The test split matching a named dataset's source text: `X[:train][?opts]` -> `X:test[?opts]`."""
    from dra_pipeline.data import NAMED

    body, sep, query = data_text.partition("?")
    name = body.partition(":")[0]
    if name not in NAMED:
        raise click.UsageError(f"{data_text} is not a named dataset; pass its test images with --test-data")
    return f"{name}:test{sep}{query}"


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected numbers like 0.05,0.1; got {text!r}", param_hint=option) from None


@teacher.command("probe")
@click.option("--teacher", "name", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Weights (file or folder) other than the default.")
@click.option("--data", "data_text", help="Source the probe trains on. Default: the teacher's dataset.")
@click.option("--test-data", "test_text", help="Source it is tested on. Default: the named dataset's test split.")
@DATA_DIR
@click.option("--layers", help="Comma-separated layers. Default: the teacher's layer.")
@click.option("--sigmas", help="Comma-separated noise levels, in the teacher's units (sigma or DDPM t).")
@click.option("--train-n", type=int, default=5000, show_default=True, help="Train images (seeded random subset).")
@click.option("--test-n", type=int, default=2000, show_default=True, help="Test images (seeded random subset).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the subsets and each row's noise.")
@click.option(
    "--teacher-labels",
    type=click.Choice(["fixed", "true"]),
    default="fixed",
    show_default=True,
    help="What a class-conditional teacher is told: class 0 for every image, or each image's label.",
)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def teacher_probe(
    name,
    checkpoint,
    data_text,
    test_text,
    data_dir,
    layers,
    sigmas,
    train_n,
    test_n,
    seed,
    teacher_labels,
    batch_size,
    device,
):
    """Linear-probe test accuracy of pooled features per layer x noise level, and of raw pixels.

    The probe: multinomial logistic regression on train-standardised features, full-batch L-BFGS, fixed weight
    decay. Prints a markdown table (rows: layers, columns: noise levels, accuracy in %).

    A conditional teacher told the true label encodes it in every layer, so `--teacher-labels true` scores
    ~100 % everywhere; the default tells every image the same class, so the probe scores the image content.
    """
    import time

    from tqdm import tqdm

    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.linear_probe import PROBE_WEIGHT_DECAY
    from dra_pipeline.seeding import subset_rows
    from dra_pipeline.teachers import create_teacher, teacher_spec
    from dra_pipeline.teachers.layer_probe import probe

    spec = teacher_spec(name)
    data_text = data_text or spec.dataset
    test_text = test_text or _test_source(data_text)
    train, test = (open_source(t, data_dir=data_dir) for t in (data_text, test_text))
    images = IndexedImages([train, test])  # test rows follow train rows, so no two images share a noise draw
    layer_list = list(dict.fromkeys(v.strip() for v in layers.split(",") if v.strip())) if layers else [spec.layer]
    noises = _floats(sigmas, "--sigmas") if sigmas else [spec.noise]
    train_rows = subset_rows(0, len(train), train_n, seed)
    test_rows = subset_rows(len(train), len(images), test_n, seed)
    t = create_teacher(name, checkpoint=checkpoint, seed=seed, device=device)
    start = time.perf_counter()
    with tqdm(total=train_n + test_n, desc="features", unit="img", mininterval=2) as bar:
        table = probe(
            t,
            images,
            train_rows,
            test_rows,
            layers=layer_list,
            noises=noises,
            batch_size=batch_size,
            teacher_labels=teacher_labels,
            progress=bar.update,
        )
    click.echo(
        f"{name}: linear probe test accuracy (%), train {train.name} n={table.n_train}, test {test.name} "
        f"n={table.n_test}, seed {seed}, weight decay {PROBE_WEIGHT_DECAY:g}"
        + (f", teacher told {'the true label' if teacher_labels == 'true' else 'class 0'}" if spec.label_dim else "")
    )
    click.echo(table.markdown(spec.noise_kind))
    click.echo(f"binomial 95% CI half-width <= {98 / table.n_test**0.5:.1f} points (n_test={table.n_test}, p=0.5)")
    click.echo(f"wall {time.perf_counter() - start:.0f} s on {device}")


@teacher.command("massive-channels")
@click.option("--teacher", "name", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Weights (file or folder) other than the default.")
@click.option("--data", "data_text", help="Image source. Default: the teacher's dataset.")
@DATA_DIR
@click.option("--layer", help="Layer to inspect. Default: the teacher's layer.")
@click.option("--sigma", type=float, help="Noise level in the teacher's units. Default: the teacher's.")
@click.option("--n", type=int, default=256, show_default=True, help="Images, evenly spaced over the source.")
@click.option("--ratio", type=float, default=None, help="Massive above this x the median channel [default: 20].")
@click.option("--top", type=int, default=10, show_default=True, help="Channels to list.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds each row's noise.")
@click.option("--device", default="cpu", show_default=True)
def teacher_massive_channels(name, checkpoint, data_text, data_dir, layer, sigma, n, ratio, top, seed, device):
    """Channels of a layer by mean |activation| over images and positions; flag those far above the median.

    The sample and threshold are those `--zero-channels auto` uses (with the defaults for --n and --ratio).
    """
    import numpy as np

    from dra_pipeline.data import open_source
    from dra_pipeline.teachers import create_teacher, teacher_spec
    from dra_pipeline.teachers.massive import MASSIVE_RATIO, find_massive_channels, sample_rows

    ratio = MASSIVE_RATIO if ratio is None else ratio
    source = open_source(data_text or teacher_spec(name).dataset, data_dir=data_dir)
    t = create_teacher(name, checkpoint=checkpoint, layer=layer, noise=sigma, seed=seed, device=device)
    rows = sample_rows(len(source), n)
    stats = find_massive_channels(t, source.read(rows), source.labels[rows], rows, ratio=ratio)
    median = float(np.median([s.mean_abs for s in stats]))
    click.echo(
        f"{name} {t.layer} {t.spec.noise_kind}={t.noise:g}: {len(stats)} channels, {len(rows)} images of "
        f"{source.name}; median channel mean|a| = {median:.4g}"
    )
    click.echo(f"{'rank':>4} {'channel':>7} {'mean|a|':>10} {'x median':>9}")
    for rank, s in enumerate(stats[:top], start=1):
        mark = "  massive" if s.massive else ""
        click.echo(f"{rank:>4} {s.channel:>7} {s.mean_abs:>10.4g} {s.ratio:>8.1f}x{mark}")
    massive = [s.channel for s in stats if s.massive]
    click.echo(f"massive (> {ratio:g}x median): {', '.join(map(str, massive)) or 'none'}")
