"""Progress of long work on the terminal. Progress bars live in the CLI layer; the library reports progress through
callbacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dra_pipeline.logs import bars_disabled

log = logging.getLogger(__name__)


@contextmanager
def progress_bar(total: int, label: str, unit: str = "img") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr (none with --quiet or TQDM_DISABLE); yields update(n), n the items just finished."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=unit, mininterval=1, disable=bars_disabled()) as bar:
        yield bar.update


class AttackProgress:
    """Per attack: a tqdm bar over its batches on a terminal (the attack's own progress as the bar's postfix),
    otherwise one message when it starts, one per restart or target class and per batch, and one when it ends."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty() and not bars_disabled()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar = self.bar and self.bar.close()

    def __call__(self, step) -> None:
        from tqdm import tqdm

        robust = f"robust {100 * step.robust / step.n:.2f} % ({step.robust}/{step.n})"
        where = f"{step.attack} batch {step.batches_done + 1}/{step.batches}"
        if self.tty and step.batches and (self.bar is None or self.bar.desc != step.attack):
            self.bar = self.bar and self.bar.close()
            self.bar = tqdm(total=step.batches, initial=step.batches_done, desc=step.attack, unit="batch", leave=False)
        if step.note:
            self.bar.set_postfix_str(step.note) if self.bar is not None else log.info(f"  {where}: {step.note}")
            return
        if self.bar is not None:
            self.bar.update(step.batches_done - self.bar.n)
        if step.batches_done < step.batches and not self.tty:
            log.info(f"  {where}: starting, {robust} so far, {step.seconds:.0f} s")
        elif step.batches_done == step.batches:
            self.bar = self.bar and self.bar.close()
            log.info(f"  {step.attack:8s} {robust}, {step.seconds:.1f} s")
