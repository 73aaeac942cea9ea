"""The attacks `evaluate` runs. Each is a callable on one batch: (x, y, rows) -> predictions on its adversarial x.

AutoAttack's components (APGD-CE, APGD-T, FAB-T, Square) run through the official code, `pyautoattack`, built as
`AutoAttack(version="standard")` so that every component has the standard settings (APGD-CE 100 steps and 1
restart, APGD-T and FAB-T 9 target classes, Square 5000 queries), then restricted to one component the way the
library's own `run_standard_evaluation_individual` does (`attacks_to_run = [name]`). Each call attacks one batch;
every component reseeds torch from `seed` at each call, so a batch attacked here gives exactly what the same
batch gives inside one uninterrupted `run_standard_evaluation` (see worst_case.py for why batches match).

PGD and FGSM reuse `dra_pipeline.pgd.pgd_linf` (L-inf only); PGD's random start for dataset row r is drawn from
a generator keyed by (seed, r), so it does not depend on the batch size or on which other points are attacked.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.logs import AUTOATTACK_LOGGER
from dra_pipeline.pgd import pgd_linf
from dra_pipeline.seeding import keyed_uniform

NORMS = ("Linf", "L2")
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # the order the standard version runs them in
ATTACKS = ("autoattack", *AUTOATTACK_STANDARD, "pgd", "fgsm")
PGD_STEPS = 50  # PGD's default iterations; step 2.5 eps / steps (Madry et al.), one uniform random start


@dataclass(frozen=True)
class Attack:
    name: str
    settings: dict  # what the report records: iterations, restarts, targets, queries, step size...
    run: Callable[..., Tensor]  # (x (B,C,H,W) in [0,1], y (B,), rows (B,), note=callable) -> predictions (B,)


def expand_attacks(names: str | Sequence[str]) -> list[str]:
    """'autoattack' -> its four components; a comma-separated list is run as one worst case (duplicates dropped)."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in parts:
        name = raw.strip().lower()
        if name not in ATTACKS:
            close = difflib.get_close_matches(name, ATTACKS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DraError(f"unknown attack {raw.strip()!r}{hint} (choose from {', '.join(ATTACKS)})")
        for component in AUTOATTACK_STANDARD if name == "autoattack" else (name,):
            if component not in out:
                out.append(component)
    return out


def check_norm(norm: str, attacks: Sequence[str]) -> str:
    if norm not in NORMS:
        raise DraError(f"unknown norm {norm!r} (choose Linf or L2)")
    linf_only = [a for a in attacks if a in ("pgd", "fgsm")]
    if norm != "Linf" and linf_only:
        raise DraError(f"{', '.join(linf_only)} here are L-inf attacks; for {norm} use apgd-ce, apgd-t or autoattack")
    return norm


def build_attack(
    name: str,
    model: nn.Module,
    *,
    norm: str,
    eps: float,
    seed: int,
    device: torch.device | str,
    steps: int | None = None,
    step: float | None = None,
    random_start: bool = True,
    n_queries: int | None = None,
) -> Attack:
    """One attack on `model` (kept in the mode it is in: evaluate hands it over in eval mode).

    Overrides, for the sanity checks: `steps` (PGD iterations, or APGD-CE iterations), `step` and `random_start`
    (PGD), `n_queries` (Square). Without them every attack has its standard settings.
    """
    if name in ("pgd", "fgsm"):
        steps = 1 if name == "fgsm" else steps or PGD_STEPS
        step = eps if name == "fgsm" else step or 2.5 * eps / steps
        return _pgd(
            name,
            model,
            eps=eps,
            steps=steps,
            step=step,
            random_start=random_start and name == "pgd",
            seed=seed,
            device=device,
        )
    if name in AUTOATTACK_STANDARD:
        return _autoattack_component(
            name, model, norm=norm, eps=eps, seed=seed, device=device, n_iter=steps, n_queries=n_queries
        )
    raise DraError(f"unknown attack {name!r} (choose from {', '.join(ATTACKS)})")


def _autoattack_component(name, model, *, norm, eps, seed, device, n_iter, n_queries) -> Attack:
    import pyautoattack
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=seed, device=str(device))
    aa.attacks_to_run = [name]
    if n_iter is not None and name == "apgd-ce":
        from pyautoattack.autopgd_base import APGDAttack

        # as AutoAttack builds its APGD (rho .75, eot 1), with fewer or more iterations: APGD derives its step-size
        # checkpoints from n_iter in __init__, so changing the attribute afterwards would leave them stale
        aa.apgd = APGDAttack(
            model,
            n_restarts=1,
            n_iter=n_iter,
            verbose=False,
            eps=eps,
            norm=norm,
            eot_iter=1,
            rho=0.75,
            seed=seed,
            device=str(device),
            logger=aa.logger,
        )
    if n_queries is not None:
        aa.square.n_queries = n_queries
    settings = {"implementation": f"pyautoattack {pyautoattack.__version__}, standard-version settings"}
    if name == "apgd-ce":
        settings |= {"loss": "ce", "n_iter": aa.apgd.n_iter, "n_restarts": aa.apgd.n_restarts}
    elif name == "apgd-t":
        a = aa.apgd_targeted
        settings |= {
            "loss": "dlr-targeted",
            "n_iter": a.n_iter,
            "n_restarts": a.n_restarts,
            "n_target_classes": a.n_target_classes,
        }
    elif name == "fab-t":
        settings |= {"n_iter": aa.fab.n_iter, "n_restarts": 1, "n_target_classes": aa.fab.n_target_classes}
    else:
        settings |= {"n_queries": aa.square.n_queries, "p_init": aa.square.p_init, "n_restarts": aa.square.n_restarts}

    def run(x: Tensor, y: Tensor, rows: Tensor, note: Callable[[str], None] | None = None) -> Tensor:
        if note is None:
            _, y_adv = aa.run_standard_evaluation(x, y, batch_size=len(x))
            return y_adv.cpu()
        component = {"apgd-ce": aa.apgd, "apgd-t": aa.apgd_targeted, "fab-t": aa.fab, "square": aa.square}[name]
        component.verbose = True  # its per-restart and per-target lines, turned into notes; nothing else changes
        try:
            with contextlib.redirect_stdout(_ComponentLines(note)):
                _, y_adv = aa.run_standard_evaluation(x, y, batch_size=len(x))
        finally:
            component.verbose = False
        return y_adv.cpu()

    return Attack(name, settings, run)


class _ComponentLines(io.TextIOBase):
    """The lines an AutoAttack component prints in verbose mode, kept where they mark progress (a restart or a
    target class done; Square every SQUARE_EVERY queries) and passed on as one-line notes."""

    SQUARE_EVERY = 500  # queries between Square's notes

    def __init__(self, note: Callable[[str], None]):
        self.note, self.pending, self.stdout = note, "", sys.stdout  # notes may print: to the real stdout

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith(("restart", "target class")):
                self._pass_on(line.replace("cum. time", "time").strip())
            elif (m := re.match(r"(\d+) - success rate=(\d+/\d+)", line)) and int(m[1]) % self.SQUARE_EVERY == 0:
                self._pass_on(f"query {m[1]}: broken {m[2]}")
        return len(text)

    def _pass_on(self, text: str) -> None:
        with contextlib.redirect_stdout(self.stdout):
            self.note(text)


def _pgd(name, model, *, eps, steps, step, random_start, seed, device) -> Attack:
    device = torch.device(device)
    start = "uniform in the eps-ball, keyed by (seed, row)" if random_start else "none"
    settings = {
        "implementation": "dra_pipeline.pgd.pgd_linf, cross-entropy",
        "steps": steps,
        "step": step,
        "random_start": start,
    }

    def run(x: Tensor, y: Tensor, rows: Tensor, note: Callable[[str], None] | None = None) -> Tensor:
        x, y = x.to(device), y.to(device)
        if random_start:
            noise = keyed_uniform(seed, rows, tuple(x.shape[1:])).to(device)

            def start(x0: Tensor) -> Tensor:
                return x0 + (2 * noise - 1) * eps
        else:

            def start(x0: Tensor) -> Tensor:
                return x0

        # summed, not averaged: each point's gradient is then independent of the batch it sits in
        x_adv = pgd_linf(
            model,
            x,
            lambda logits: F.cross_entropy(logits, y, reduction="sum"),
            eps=eps,
            step=step,
            steps=steps,
            random_start=start,
        )
        with torch.no_grad():
            return model(x_adv).argmax(1).cpu()

    return Attack(name, settings, run)


class _FlagCollector(logging.Handler):
    """Keeps each kind of warning AutoAttack logs once (kinds differ in more than their numbers)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._kinds: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        kind = re.sub(r"[\d.]+", "#", message)
        if kind not in self._kinds:
            self._kinds.add(kind)
            self.messages.append(message)


@contextlib.contextmanager
def autoattack_flags(earlier: Sequence[str] = ()) -> Iterator[list[str]]:
    """Collects the warnings AutoAttack's checks log (randomness, probability outputs, zero gradients, dynamic
    forward, Square beating white-box, class count) while the block runs; they are not printed meanwhile.
    The list yielded starts with `earlier` (e.g. those of an interrupted run) and grows in place."""
    logger = logging.getLogger(AUTOATTACK_LOGGER)
    collector = _FlagCollector()
    for message in earlier:
        collector.emit(logging.makeLogRecord({"msg": message, "levelno": logging.WARNING}))
    logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)
