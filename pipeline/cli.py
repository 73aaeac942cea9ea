"""The `dra-pipeline` command: a click group of thin commands over library calls.

Heavy imports (torch, zarr, h5py) happen inside commands so that `--help` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import DraError


class _Group(click.Group):
    """Turns the library's user-facing errors into one clear line and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DraError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dra-pipeline")
def main():
    """Adversarial training with diffusion representation alignment (DRA), as a feature-caching pipeline."""


# ---------------------------------------------------------------------------------------------------- data
@main.group()
def data():
    """Image sources: inspect them, convert DM-AT npz files."""


DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DRA_DATA_DIR",
    help="Folder holding a named dataset (or a root holding it under its usual name). Env: DRA_DATA_DIR.",
)


@data.command("info")
@click.argument("source")
@DATA_DIR
def data_info(source: str, data_dir: Path | None):
    """Print count, classes, image shape, split and fingerprint of SOURCE.

    SOURCE is a named dataset (fashion-mnist, cifar10, cifar100, optionally :train or :test; both splits are
    shown when none is named), a DM-AT .npz, an .h5 file (options as FILE.h5?images=NAME&labels=NAME) or an
    image folder with one sub-folder per class.
    """
    from .data import NAMED, SPLITS, open_source

    texts = [f"{source}:{split}" for split in SPLITS] if source in NAMED else [source]
    rows = []
    for text in texts:
        src = open_source(text, data_dir=data_dir)
        h, w, c = src.image_shape
        rows.append((src.spec.split, len(src), src.num_classes, f"{h}x{w}x{c}", src.fingerprint(), src.spec.path))
    click.echo(f"{source} ({rows[0][5]})")
    click.echo(f"{'split':<6} {'count':>9} {'classes':>7}  {'image':<10} fingerprint")
    for split, count, classes, shape, fp, _ in rows:
        click.echo(f"{split:<6} {count:>9} {classes:>7}  {shape:<10} {fp}")
    if src.class_names:
        click.echo("classes: " + ", ".join(src.class_names))


@data.command("convert-npz")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="New .npz to write.")
def data_convert_npz(src: Path, out: Path):
    """Rewrite a compressed npz (np.savez_compressed) uncompressed, so its images can be memory-mapped.

    Streams member by member in constant memory; the output appears only when complete.
    """
    from .data.npz import convert_npz

    convert_npz(src, out)
    click.echo(f"wrote {out}")


# --------------------------------------------------------------------------------------------------- cache
@main.group()
def cache():
    """Feature stores: inspect, verify, export."""


STORE = click.argument("path", type=click.Path(path_type=Path))


@cache.command("info")
@STORE
def cache_info(path: Path):
    """Shape, dtype, provenance and shards done/missing of the store at PATH."""
    from .cache import FeatureStore

    store = FeatureStore.open(path)
    lay, missing = store.layout, store.missing_shards()
    click.echo(f"{path}: {lay.rows} rows x {len(lay.views)} views ({', '.join(lay.views)}) x {lay.dim} {lay.dtype}")
    click.echo(f"shards: {lay.num_shards - len(missing)} of {lay.num_shards} done ({lay.rows_per_shard} rows each)")
    if missing:
        click.echo("missing: " + _ranges(missing))
    click.echo("sources:")
    for s in store.sources:
        click.echo(f"  rows {s['offset']}+{s['count']}: {s['kind']} {s['split']} {s['path']} [{s['fingerprint']}]")
    click.echo("provenance: " + json.dumps(store.provenance, indent=2, sort_keys=True))


@cache.command("verify")
@STORE
def cache_verify(path: Path):
    """Re-hash every shard against its completion record; exit 1 on any mismatch or missing shard."""
    from .cache import FeatureStore

    store = FeatureStore.open(path)
    problems = store.verify()
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} of {store.layout.num_shards} shards failed verification")
    click.echo(f"ok: {store.layout.num_shards} shards match their records")


@cache.command("export")
@STORE
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HDF5 file.")
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def cache_export(path: Path, target: Path, overwrite: bool):
    """Copy a complete store into one HDF5 file (features, labels, provenance) for sharing."""
    from .cache import FeatureStore
    from .cache.export import export_hdf5

    export_hdf5(FeatureStore.open(path), target, overwrite=overwrite)
    click.echo(f"wrote {target}")


def _ranges(items: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    runs: list[list[int]] = []
    for i in items:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


# ------------------------------------------------------------------------------------------------- teacher
@main.group()
def teacher():
    """Diffusion teachers: list them, fit one on your data."""


@teacher.command("list")
def teacher_list():
    """Registered teachers with their defaults (layer, noise level, feature width, checkpoint path)."""
    from .teachers import list_teachers

    click.echo(f"{'name':<20} {'data':<14} {'res':>4} {'layer':<18} {'noise':>10} {'dim':>5}  checkpoint")
    for s in list_teachers():
        noise = f"{s.noise_kind}={s.noise:g}"
        ckpt = s.checkpoint or "(packaged)" if s.family != "tiny" else "(random weights)"
        click.echo(f"{s.name:<20} {s.dataset:<14} {s.resolution:>4} {s.layer:<18} {noise:>10} {s.dim:>5}  {ckpt}")


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

    from .data import open_source
    from .data.indexed import IndexedImages
    from .teachers.fit import FitConfig, fit, network_config

    if device == "cpu":
        torch.set_flush_denormal(True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images = IndexedImages([open_source(data_text, data_dir=data_dir)])
    cfg = FitConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    with tqdm(total=steps, desc="teacher fit", unit="step", mininterval=2) as bar:
        path = fit(images, network_config(net, images), cfg, out, device=device, max_minutes=max_minutes,
                   progress=lambda step: bar.update(step - bar.n))  # fmt: skip
    click.echo(f"EMA weights: {path}")
