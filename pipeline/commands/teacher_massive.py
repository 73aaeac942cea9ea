"""`dra-pipeline teacher massive-channels`: the channels of a layer whose activations stand far above the rest."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, DATA_DIR, DEVICE, verbosity


@click.command("massive-channels")
@click.option("--teacher", "name", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Weights (file or folder) other than the default.")
@click.option("--data", help="Image source. Default: the teacher's dataset.")
@DATA_DIR
@click.option("--layer", help="Layer to inspect. Default: the teacher's layer.")
@click.option("--sigma", type=float, help="Noise level in the teacher's units. Default: the teacher's.")
@click.option("--n", type=int, default=256, show_default=True, help="Images, evenly spaced over the source.")
@click.option("--ratio", type=float, default=None, help="Massive above this x the median channel [default: 20].")
@click.option("--top-n", type=int, default=10, show_default=True, help="Channels to list.")
@click.option("--seed", type=COUNT0, default=0, show_default=True, help="Seeds each row's noise.")
@DEVICE
@verbosity
def massive_channels(top_n, **kw):
    """Channels of a layer by mean |activation| over images and positions; flag those far above the median.

    The sample and threshold are those `--zero-channels auto` uses (with the defaults for --n and --ratio).
    """
    from dra_pipeline.jobs.teachers import massive_channels as find

    found = find(**kw)
    click.echo(found.header)
    click.echo(f"{'rank':>4} {'channel':>7} {'mean|a|':>10} {'x median':>9}")
    for rank, s in enumerate(found.stats[:top_n], start=1):
        click.echo(f"{rank:>4} {s.channel:>7} {s.mean_abs:>10.4g} {s.ratio:>8.1f}x" + ("  massive" * s.massive))
    massive = [s.channel for s in found.stats if s.massive]
    click.echo(f"massive (> {found.ratio:g}x median): {', '.join(map(str, massive)) or 'none'}")
