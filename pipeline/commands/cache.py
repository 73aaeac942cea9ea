"""`dra-pipeline cache`: inspect, verify and export feature stores."""

from pathlib import Path

import click

from dra_pipeline.commands.options import verbosity


@click.group()
@verbosity
def cache():
    """Feature stores: inspect, verify, export."""


STORE = click.argument("path", type=click.Path(path_type=Path))


@cache.command("info")
@STORE
@verbosity
def cache_info(path: Path):
    """Shape, dtype, provenance and shards done/missing of the store at PATH."""
    from dra_pipeline.cache import FeatureStore

    click.echo("\n".join(FeatureStore.open(path).summary()))


@cache.command("verify")
@STORE
@verbosity
def cache_verify(path: Path):
    """Re-hash every shard file (index and checksum included) against its completion record and the labels
    against their creation hash; exit 1 on any mismatch or missing shard."""
    from dra_pipeline.cache import FeatureStore

    store = FeatureStore.open(path)
    problems = store.verify()
    for line in problems:
        click.echo(line, err=True)
    labels = "the labels and " if any(": labels/ " in line for line in problems) else ""
    shards = len(problems) - bool(labels)
    if problems:
        raise click.ClickException(f"{labels}{shards} of {store.layout.num_shards} shards failed verification")
    click.echo(f"ok: {store.layout.num_shards} shards and the labels match their records")


@cache.command("export")
@STORE
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HDF5 file to write.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@verbosity
def cache_export(path: Path, out: Path, overwrite: bool):
    """Copy a complete store into one HDF5 file (features, labels, provenance) for sharing."""
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.cache.export import export_hdf5

    export_hdf5(FeatureStore.open(path), out, overwrite=overwrite)
    click.echo(f"wrote {out}")
