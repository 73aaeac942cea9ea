"""The `dra-pipeline` command: a click group of thin commands over library calls.

Heavy imports (torch, zarr, h5py) happen inside commands so that `--help` answers at once.
"""

from __future__ import annotations

import click

from dra_pipeline.commands.options import verbosity
from dra_pipeline.errors import DraError


class _UsageLine(click.ClickException):
    """A bad option value or a missing argument: one line, exit status 2 (click's status for usage errors)."""

    exit_code = 2


class _Group(click.Group):
    """Turns the library's user-facing errors into one clear line and exit status 1, and a command's usage errors
    (a value outside an option's range, an unknown option) into one line and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DraError as e:
            raise click.ClickException(str(e)) from None
        except click.UsageError as e:
            where = f" (see `{e.ctx.command_path} -h`)" if e.ctx is not None else ""
            raise _UsageLine(e.format_message() + where) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dra-pipeline")
@verbosity
def main():
    """Adversarial training with diffusion representation alignment (DRA), as a feature-caching pipeline."""


def _register() -> None:
    """Attach the command groups; each lives in pipeline/commands/ and imports its heavy modules lazily."""
    from dra_pipeline.commands.analyze import analyze
    from dra_pipeline.commands.cache import cache
    from dra_pipeline.commands.data import data
    from dra_pipeline.commands.evaluate import evaluate
    from dra_pipeline.commands.extract import extract
    from dra_pipeline.commands.generate import generate
    from dra_pipeline.commands.teacher import teacher
    from dra_pipeline.commands.train import train

    for group in (data, cache, teacher, extract, generate, train, evaluate, analyze):
        main.add_command(group)


_register()
