"""Progress of long work on the terminal. Progress bars live in the CLI layer; the library reports progress through
callbacks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


@contextmanager
def progress_bar(total: int, label: str, unit: str = "img") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr; yields update(n), called with the items just finished."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=unit, mininterval=1) as bar:
        yield bar.update


class AttackProgress:
    """Per attack: a tqdm bar over its batches on a terminal, otherwise one line per batch; a line when it ends."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar = self.bar and self.bar.close()

    def __call__(self, step) -> None:
        from tqdm import tqdm

        done = step.batches_done == step.batches
        if self.tty and step.batches and (self.bar is None or self.bar.desc != step.attack):
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=step.batches, initial=step.batches_done, desc=step.attack, unit="batch", leave=False)
        elif self.bar is not None:
            self.bar.update(step.batches_done - self.bar.n)
        robust = f"robust {100 * step.robust / step.n:.2f} % ({step.robust}/{step.n})"
        if not self.tty and not done:
            click.echo(f"  {step.attack} batch {step.batches_done}/{step.batches}: {robust}, {step.seconds:.0f} s")
        if done:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            click.echo(f"  {step.attack:8s} {robust}, {step.seconds:.1f} s")
