"""`dra-pipeline teacher probe`: linear probes of a teacher's layers x noise levels against raw pixels."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DATA_DIR, DEVICE, verbosity
from dra_pipeline.commands.types import comma_list

WEIGHTS = click.Path(path_type=Path)


@click.command("probe")
@click.option("--teacher", "name", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=WEIGHTS, help="Weights (file or folder) other than the default.")
@click.option("--data", help="Source the probe trains on. Default: the teacher's dataset.")
@click.option("--test-data", help="Source it is tested on. Default: the named dataset's test split.")
@DATA_DIR
@click.option("--layers", callback=comma_list(str), help="Comma-separated layers. Default: the teacher's layer.")
@click.option("--sigmas", callback=comma_list(float), help="Comma-separated noise levels, in the teacher's units.")
@click.option("--train-n", type=int, default=5000, show_default=True, help="Train images (seeded random subset).")
@click.option("--test-n", type=int, default=2000, show_default=True, help="Test images (seeded random subset).")
@click.option("--seed", type=COUNT0, default=0, show_default=True, help="Seeds the subsets and each row's noise.")
@click.option(
    "--teacher-labels",
    type=click.Choice(["fixed", "true"]),
    default="fixed",
    show_default=True,
    help="What a class-conditional teacher is told: class 0 for every image, or each image's label.",
)
@click.option("--batch-size", type=COUNT1, default=256, show_default=True)
@DEVICE
@verbosity
def probe(name, layers, sigmas, **kw):
    """Linear-probe test accuracy of pooled features per layer x noise level, and of raw pixels.

    A conditional teacher told the true label encodes it in every layer, so `--teacher-labels true` scores
    ~100 % everywhere; the default tells every image the same class, so the probe scores the image content.
    """
    import time

    from dra_pipeline.commands.progress import progress_bar
    from dra_pipeline.jobs.teachers import probe_teacher
    from dra_pipeline.teachers import teacher_spec

    start = time.perf_counter()
    result = probe_teacher(name, layers=layers, noises=sigmas, progress=progress_bar, **kw)
    n_test = result.table.n_test
    click.echo(result.header)
    click.echo(result.table.markdown(teacher_spec(name).noise_kind))
    click.echo(f"binomial 95% CI half-width <= {98 / n_test**0.5:.1f} points (n_test={n_test}, p=0.5)")
    click.echo(f"wall {time.perf_counter() - start:.0f} s on {kw['device']}")
