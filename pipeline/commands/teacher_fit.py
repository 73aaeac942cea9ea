"""`dra-pipeline teacher fit`: train a class-conditional EDM SongUNet on any image source."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DATA_DIR, DEVICE, verbosity

NETS = "Network: small (1.75 M), cifar-mini (3.95 M), ddpmpp (55.7 M)."


@click.command("fit")
@click.option("--data", default="fashion-mnist", show_default=True, help="Image source to train on.")
@DATA_DIR
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--net", default="small", show_default=True, help=NETS)
@click.option("--steps", type=int, default=20_000, show_default=True)
@click.option("--batch-size", type=COUNT1, default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=COUNT0, default=0, show_default=True)
@DEVICE
@click.option("--max-minutes", type=float, default=None, help="Stop (resumably) after this much wall time.")
@verbosity
def teacher_fit(data, data_dir, out, net, steps, batch_size, lr, seed, device, max_minutes):
    """Train a class-conditional EDM SongUNet on a source; rerun the same command to resume.

    Writes OUT/ema.safetensors (usable as --checkpoint of an EDM teacher), OUT/stats.jsonl and OUT/state.pt.
    """
    from dra_pipeline.commands.progress import progress_bar
    from dra_pipeline.jobs.teachers import fit_teacher
    from dra_pipeline.teachers.fit import FitConfig

    config = FitConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    path = fit_teacher(
        data,
        out=out,
        net=net,
        config=config,
        device=device,
        data_dir=data_dir,
        max_minutes=max_minutes,
        progress=progress_bar,
    )
    click.echo(f"EMA weights: {path}")
