"""Per-point worst case over several attacks, resumable batch by batch.

A point counts as robust only if it is classified correctly on the clean image and under every attack. As in
AutoAttack's `run_standard_evaluation`, each attack is given only the points still robust when it starts, in
index order, cut into batches of `batch_size`; a point any attack breaks stays broken. So with the same batch
size and seed the batches, and hence the numbers, are the ones an uninterrupted AutoAttack call produces, and
a resumed run (which re-attacks only the batches not recorded in the state) produces them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.attacks import Attack
from dra_pipeline.evaluation.state import AttackProgress, EvaluationState


@dataclass(frozen=True)
class AttackResult:
    name: str
    settings: dict
    given: int  # points still robust when the attack started
    broken: int  # of those, the points it made misclassified
    robust_after: int  # points correct under this attack and every one before it
    seconds: float  # wall time of its batches (summed over resumed runs)


@dataclass(frozen=True)
class WorstCase:
    clean: np.ndarray  # (N,) bool: correct on the clean image
    robust: np.ndarray  # (N,) bool: correct on the clean image and under every attack
    attacks: list[AttackResult]
    restored_batches: int  # batches read back from a saved state instead of attacked again


@dataclass(frozen=True)
class Step:
    """Progress after each attacked (or restored) batch, for a progress bar."""

    attack: str
    batches_done: int
    batches: int
    robust: int  # points robust so far, of n
    n: int
    seconds: float  # the attack's wall time so far
    note: str = ""  # within a batch: the attack's own progress (a restart, a target class), else empty


def predict(model: nn.Module, x: Tensor, *, batch_size: int, device: torch.device | str) -> Tensor:
    """Predicted classes (N,) int64 on the CPU, in batches, without gradients."""
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch_size):
            out.append(model(x[a : a + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def worst_case(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    attacks: Sequence[Attack],
    *,
    batch_size: int,
    device: torch.device | str,
    state: EvaluationState | None = None,
    progress: Callable[[Step], None] | None = None,
) -> WorstCase:
    """Run `attacks` in order as a cascade on (x (N,C,H,W) in [0,1] on the CPU, y (N,), dataset rows (N,)).

    `state` (in memory when None) is resumed when it holds progress and saved after every batch.
    """
    state = state or EvaluationState(key="in-memory")
    n = len(x)
    clean = (predict(model, x, batch_size=batch_size, device=device) == y).numpy()
    if state.clean is not None and state.clean != clean.tolist():
        where = f" in {state.path}" if state.path else ""
        raise DraError(
            f"clean predictions differ from those recorded in the saved state{where} (a model whose "
            "outputs change from run to run?); delete the state file to start afresh"
        )
    state.clean = clean.tolist()
    robust = clean.copy()
    results, restored = [], 0
    for attack in attacks:
        progress_ = state.attacks.get(attack.name)
        if progress_ is None:
            progress_ = state.attacks[attack.name] = AttackProgress(todo=np.flatnonzero(robust).tolist())
        todo = np.asarray(progress_.todo, dtype=np.int64)
        robust[np.asarray(progress_.broken, dtype=np.int64)] = False
        batches = [todo[a : a + batch_size] for a in range(0, len(todo), batch_size)]
        restored += progress_.batches_done
        if progress:
            progress(Step(attack.name, progress_.batches_done, len(batches), int(robust.sum()), n, progress_.seconds))
        for b in range(progress_.batches_done, len(batches)):
            idx = batches[b]
            t0 = time.perf_counter()
            index = torch.from_numpy(idx)
            note = _batch_note(progress, attack.name, b, len(batches), robust, progress_.seconds) if progress else None
            pred = attack.run(x[index], y[index], rows[index], note=note)
            broken = idx[(pred != y[index]).numpy()]
            robust[broken] = False
            progress_.broken += broken.tolist()
            progress_.batches_done = b + 1
            progress_.seconds += time.perf_counter() - t0
            state.save()
            if progress:
                progress(Step(attack.name, b + 1, len(batches), int(robust.sum()), n, progress_.seconds))
        results.append(
            AttackResult(
                attack.name, attack.settings, len(todo), len(progress_.broken), int(robust.sum()), progress_.seconds
            )
        )
    state.save()
    return WorstCase(clean, robust, results, restored)


def _batch_note(
    progress: Callable[[Step], None], attack: str, batch: int, batches: int, robust: np.ndarray, seconds: float
) -> Callable[[str], None]:
    """note(text): a Step of batch `batch` carrying the attack's own progress line, with the time spent so far."""
    started = time.perf_counter()

    def note(text: str) -> None:
        progress(
            Step(
                attack,
                batch,
                batches,
                int(robust.sum()),
                len(robust),
                seconds + time.perf_counter() - started,
                note=text,
            )
        )

    return note
