"""Resumable evaluation state: which points each attack was given, how many batches it finished, what it broke.

Why not pyautoattack's own `state_path`: in pyautoattack 0.2.0 it cannot resume. Its `EvaluationState` is written
with `open("w")` + `json.dump` (a crash mid-write leaves a truncated file), stores the attack set as
`str(set)` so that reading it back always fails with "The state was created with a different set of attacks",
restores the finished attacks as a list that has no `.add`, and `run_standard_evaluation` then reaches an unbound
`y_adv` on the restore path. It also records neither eps, norm, seed nor which points were attacked, so a stale
file would be reused silently. This state is keyed by all of those, written atomically after every attacked
batch, and a resumed run attacks exactly the batches an uninterrupted run would (same points, same order, same
seed), so resuming gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.errors import DraError

FORMAT = 1


def state_key(**settings) -> str:
    """sha256 (hex) of the settings that must match for a saved state to be resumed (JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class AttackProgress:
    todo: list[int]  # point indices the attack was given (robust when it started), in order
    batches_done: int = 0  # batches of `todo` (batch_size each) finished
    broken: list[int] = field(default_factory=list)  # points it made misclassified, in order found
    seconds: float = 0.0  # wall time spent on its finished batches, summed over resumed runs


@dataclass
class EvaluationState:
    """In memory when `path` is None; otherwise saved to `path` (atomically) by `save()`."""

    key: str
    path: Path | None = None
    clean: list[bool] | None = None  # clean correctness of every point, to detect a model that changed
    attacks: dict[str, AttackProgress] = field(default_factory=dict)  # in the order they were started
    flags: list[str] = field(default_factory=list)  # AutoAttack warnings raised so far (over every resumed run)
    restored: bool = False  # True when progress was read back from `path`
    discarded: str | None = None  # why an existing file at `path` was not resumed

    @classmethod
    def open(cls, path: Path | None, *, key: str) -> EvaluationState:
        """Resume from `path` if it holds a state with this key; otherwise start afresh (the file is replaced on
        the first save)."""
        if path is None or not Path(path).exists():
            return cls(key, path)
        path = Path(path)
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") != FORMAT:
                raise ValueError(f"format {saved.get('format')!r}")
        except (ValueError, OSError) as e:
            raise DraError(f"{path}: not a readable evaluation state ({e}); delete it to start afresh") from None
        if saved.get("key") != key:
            return cls(key, path, discarded="it was written for other settings (model, points, attack, eps or seed)")
        attacks = {name: AttackProgress(**progress) for name, progress in saved["attacks"].items()}
        return cls(key, path, saved.get("clean"), attacks, saved.get("flags", []), restored=True)

    def save(self) -> None:
        if self.path is None:
            return
        attacks = {name: vars(progress) for name, progress in self.attacks.items()}
        text = json.dumps(
            {"format": FORMAT, "key": self.key, "clean": self.clean, "attacks": attacks, "flags": self.flags}
        )
        atomic_write_text(self.path, text)
