"""`dra-pipeline generate`: class-balanced synthetic images from a conditional EDM teacher, as a DM-AT npz."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DEVICE, verbosity


@click.command()
@click.option("--teacher", default="edm-fmnist", show_default=True, help="An EDM-family teacher.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="Override its weights.")
@click.option("--n", type=COUNT1, required=True, help="Number of images.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.npz to write.")
@click.option("--seed", type=COUNT0, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=2), default=18, show_default=True, help="Heun steps (2N-1 calls).")
@click.option("--batch-size", type=COUNT1, default=100, show_default=True)
@DEVICE
@verbosity
def generate(teacher, checkpoint, n, out, seed, steps, batch_size, device):
    """Sample images with EDM's deterministic Heun sampler (sigma 80 -> 0.002 -> 0, rho 7) into OUT.

    Image i has label i % classes and noise seeded by (seed, i). Work is saved in chunks of 1000 images in
    .OUT.parts/ beside OUT: rerun the same command to resume. OUT holds `image` (uint8 N x H x W x C) and
    `label`, stored uncompressed so that it memory-maps as an image source.
    """
    from dra_pipeline.commands.progress import progress_bar
    from dra_pipeline.jobs.generate import run_generate

    run_generate(
        teacher,
        checkpoint=checkpoint,
        n=n,
        out=out,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        device=device,
        progress=progress_bar,
    )
    click.echo(f"wrote {out}: {n} images, {steps} Heun steps, seed {seed}")
