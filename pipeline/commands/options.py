"""Options shared by several commands; their value types are in types.py."""

from __future__ import annotations

from pathlib import Path

import click

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DRA_DATA_DIR",
    help="Folder holding a named dataset (or a root holding it under its usual name). Env: DRA_DATA_DIR.",
)
COUNT0 = click.IntRange(min=0)  # seeds: numpy's seed sequences take no negative integer
COUNT1 = click.IntRange(min=1)  # sizes and counts: batch sizes, rows, workers, limits
DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N; under torchrun, cuda is the local GPU."
DEVICE = click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
# train: a preset names its device (fmnist-cpu: cpu); --device given overrides it
TRAIN_DEVICE = click.option("--device", default="auto", help=f"{DEVICE_HELP} Not given: the preset's train.device.")


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    import logging

    from dra_pipeline.logs import configure

    chosen = ctx.meta.setdefault("dra_pipeline.verbosity", set())  # shared by a group and its subcommand
    if value:
        chosen.add(param.name)
    if len(chosen) > 1:
        raise click.UsageError("--quiet and --verbose exclude each other: choose one")
    configure({"quiet": logging.WARNING, "verbose": logging.DEBUG}.get(next(iter(chosen), ""), logging.INFO))


def verbosity(command):
    """-q/--quiet (warnings only, no progress bars) and -v/--verbose (debug messages, AutoAttack's own progress)."""
    for names, what in (
        (("-v", "--verbose"), "Also debug messages and AutoAttack's own progress."),
        (("-q", "--quiet"), "Only warnings and errors; no progress bars."),
    ):
        flag = click.option(*names, is_flag=True, expose_value=False, is_eager=True, callback=_verbosity, help=what)
        command = flag(command)
    return command
