"""The package's messages and progress bars: every module logs to `logging.getLogger(__name__)` under the
`dra_pipeline` logger; the command line shows them on stderr through `tqdm.write`, so that bars stay whole.

A library user sees them with `logging.basicConfig(level=logging.INFO)`. Bars are shown unless TQDM_DISABLE is set
(any non-empty value, as for tqdm itself) or the `dra_pipeline` logger's level is above INFO (`--quiet`).
"""

from __future__ import annotations

import logging
import os
import sys

PACKAGE = "dra_pipeline"
AUTOATTACK_LOGGER = "auto-attack"  # pyautoattack's logger: its progress at DEBUG, its checks' flags at WARNING


class TqdmHandler(logging.Handler):
    """Writes each record's message on the current sys.stderr with tqdm.write (a bar on the terminal is redrawn
    below it, not broken)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


_HANDLER = TqdmHandler()


def configure(level: int) -> None:
    """Show the package's messages at `level` and above in the plain "message" format (the command line calls this
    once per command). At DEBUG, AutoAttack's own progress is shown too; otherwise its logger is left to the
    evaluation, which collects its warnings as flags and reports them once."""
    package, autoattack = logging.getLogger(PACKAGE), logging.getLogger(AUTOATTACK_LOGGER)
    package.setLevel(level)
    if _HANDLER not in package.handlers:
        package.addHandler(_HANDLER)
    if level <= logging.DEBUG and _HANDLER not in autoattack.handlers:
        autoattack.setLevel(logging.DEBUG)
        autoattack.addHandler(_HANDLER)
    elif level > logging.DEBUG and _HANDLER in autoattack.handlers:
        autoattack.setLevel(logging.NOTSET)
        autoattack.removeHandler(_HANDLER)


def bars_disabled() -> bool:
    """True when progress bars must not be drawn: TQDM_DISABLE is set, or the package logger is quieter than INFO.
    Read at each bar (tqdm reads TQDM_DISABLE once, and an explicit `disable=` would override it)."""
    return bool(os.environ.get("TQDM_DISABLE")) or logging.getLogger(PACKAGE).level > logging.INFO
