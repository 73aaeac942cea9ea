"""`dra-pipeline cache`: inspect, verify and export feature stores."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def cache():
    """Feature stores: inspect, verify, export."""


STORE = click.argument("path", type=click.Path(path_type=Path))


@cache.command("info")
@STORE
def cache_info(path: Path):
    """Shape, dtype, provenance and shards done/missing of the store at PATH."""
    from dra_pipeline.cache import FeatureStore

    for line in FeatureStore.open(path).summary():
        click.echo(line)


@cache.command("verify")
@STORE
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
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HDF5 file.")
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def cache_export(path: Path, target: Path, overwrite: bool):
    """Copy a complete store into one HDF5 file (features, labels, provenance) for sharing."""
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.cache.export import export_hdf5

    export_hdf5(FeatureStore.open(path), target, overwrite=overwrite)
    click.echo(f"wrote {target}")
