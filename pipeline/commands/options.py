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

COUNT0 = click.IntRange(min=0)  # seeds: numpy's seed sequences take no negative integer
COUNT1 = click.IntRange(min=1)  # sizes and counts: batch sizes, rows, workers, limits

DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N; under torchrun, cuda is the local GPU.",
)


def comma_list(kind=str):
    """A click callback: 'a,b' -> [kind(a), kind(b)] (None when the option is absent), one clear line otherwise."""

    def parse(_ctx, param, text):
        if text is None:
            return None
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected a comma list of {kind.__name__} values, got {text!r}") from None

    return parse
