"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DRA_DATA_DIR",
    help="Folder holding a named dataset (or a root holding it under its usual name). Env: DRA_DATA_DIR.",
)

DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N; under torchrun, cuda is the local GPU.",
)
