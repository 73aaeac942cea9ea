"""`dra-pipeline data`: inspect image sources, convert DM-AT npz files."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR, verbosity


@click.group()
@verbosity
def data():
    """Image sources: inspect them, convert DM-AT npz files."""


@data.command("info")
@click.argument("source")
@DATA_DIR
@verbosity
def data_info(source: str, data_dir: Path | None):
    """Print count, classes, image shape, split and fingerprint of SOURCE.

    SOURCE is a named dataset (fashion-mnist, cifar10, cifar100, optionally :train or :test; both splits are
    shown when none is named), a DM-AT .npz, an .h5 file (options as FILE.h5?images=NAME&labels=NAME) or an
    image folder with one sub-folder per class.
    """
    from dra_pipeline.data import NAMED, SPLITS, open_source

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
@verbosity
def data_convert_npz(src: Path, out: Path):
    """Rewrite a compressed npz (np.savez_compressed) uncompressed, so its images can be memory-mapped.

    Streams member by member in constant memory; the output appears only when complete.
    """
    from dra_pipeline.data.npz import convert_npz

    convert_npz(src, out)
    click.echo(f"wrote {out}")
