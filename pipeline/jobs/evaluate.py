"""Stage three's wiring: a checkpoint in, report.json + report.md (and optionally RobustBench's model-info JSON) out.

Loads the classifier (weights_only), takes the points, opens or resumes the evaluation state beside the report,
runs `stages.evaluate` and writes the reports. The command is a thin layer over `evaluate_checkpoint`, and
bench/evaluate_overhead.py times exactly this path.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyautoattack
import torch

from dra_pipeline.atomic import atomic_write_text, check_writable
from dra_pipeline.checkpoints import load_classifier
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.attacks import AUTOATTACK_STANDARD, check_norm, expand_attacks
from dra_pipeline.evaluation.estimate import estimate
from dra_pipeline.evaluation.points import load_points
from dra_pipeline.evaluation.report import (
    build_report,
    check_report_target,
    model_info,
    report_paths,
    trial_line,
    write_reports,
)
from dra_pipeline.evaluation.sanity import SanityConfig
from dra_pipeline.evaluation.state import EvaluationState, state_key
from dra_pipeline.evaluation.worst_case import Step
from dra_pipeline.hashing import file_sha256
from dra_pipeline.stages.evaluate import Evaluation, evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    """What to attack with and on which points; every field has the command line's default."""

    attack: str = "autoattack"  # autoattack (its four components) or a comma list of attacks
    norm: str = "Linf"  # Linf or L2
    eps: float | None = None  # radius, pixels in [0, 1]; None: the eps the checkpoint trained at
    n: int | None = None  # points; None: the whole split
    split: str = "test"  # split of the model's named dataset
    data: str | None = None  # another source instead (image folder, .npz, .h5, NAME:SPLIT)
    preprocessing: str | None = None  # RobustBench's resize/crop for image folders
    selection: str | None = None  # first | random (default: first for named datasets, random otherwise)
    subset: Path | None = None  # a file listing the points (row numbers or folder-relative paths)
    batch_size: int = 500  # points per attacked batch
    seed: int = 0  # seeds every attack
    sanity: bool = False  # also run the sanity checks
    model_info: bool = False  # also write a RobustBench-style <out>-model-info.json
    eps_grid: tuple[float, ...] | None = None  # also accuracy against these radii (PGD-20), <out>-eps-grid.png

    @property
    def attacks(self) -> list[str]:
        names = expand_attacks(self.attack)
        check_norm(self.norm, names)
        return names

    def check(self) -> None:
        """Refuse settings that cannot run, before anything is loaded or written."""
        names = self.attacks
        if self.eps is not None and not 0 < self.eps < math.inf:
            raise DraError(f"--eps must be positive and finite (got {self.eps:g})")
        if self.batch_size < 1:
            raise DraError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.seed < 0:
            raise DraError(f"--seed must be at least 0 (got {self.seed})")
        if self.eps_grid is not None and not (self.eps_grid and all(0 <= e < math.inf for e in self.eps_grid)):
            raise DraError(f"--eps-grid must list radii >= 0, such as 0,2/255,4/255,8/255 (got {self.eps_grid})")
        if self.model_info and names != list(AUTOATTACK_STANDARD):
            raise DraError("--model-info reports AutoAttack accuracy: use it with --attack autoattack")


@dataclass(frozen=True)
class Written:
    report: dict
    evaluation: Evaluation
    json: Path
    markdown: Path
    state: Path
    model_info: Path | None
    eps_grid: Path | None = None  # the figure of accuracy against eps


def evaluate_checkpoint(
    checkpoint: Path,
    settings: EvaluationSettings,
    *,
    device: torch.device,
    out: Path | None = None,
    data_dir=None,
    progress: Callable[[Step], None] | None = None,
) -> Written:
    """Evaluate `checkpoint` on the points `settings` name; reports go to `out` (default: report.json beside the
    checkpoint), progress to <out stem>.state.json so that rerunning resumes."""
    settings.check()
    s, attacks = settings, settings.attacks
    out = Path(out) if out else Path(checkpoint).parent / "report.json"
    check_report_target(out, model_info=s.model_info, eps_grid=bool(s.eps_grid))  # before anything is loaded or written
    check_writable(out, "report")
    paths = report_paths(out)
    start = time.perf_counter()
    loaded = load_classifier(checkpoint, device)
    info = loaded.info
    eps = info.get("eps") if s.eps is None else s.eps
    if eps is None:
        raise DraError(f"{checkpoint} records no training eps; pass --eps")
    points = load_points(
        info["dataset"],
        s.split,
        s.n,
        data=s.data,
        preprocessing=s.preprocessing,
        selection=s.selection,
        subset=s.subset,
        data_dir=data_dir,
        image_size=info.get("image_size"),
        channels=info["in_channels"],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    sha256 = file_sha256(checkpoint)
    data = {k: v for k, v in points.description.items() if k != "path"}
    key = state_key(
        checkpoint_sha256=sha256,
        data=data,
        attacks=attacks,
        norm=s.norm,
        eps=eps,
        seed=s.seed,
        batch_size=s.batch_size,
        device=device.type,
        pyautoattack=pyautoattack.__version__,
    )
    state = EvaluationState.open(paths["state"], key=key)
    if state.discarded:
        log.info(f"{state.path}: {state.discarded}; starting afresh")
    elif state.restored:
        log.info(f"resuming from {state.path}")
    log.info(
        f"{checkpoint} ({info['name']}, epoch {loaded.epoch}) on {data['source']} {data['selection']}: "
        f"{', '.join(attacks)}, {s.norm} eps {eps:g}, seed {s.seed}, batch {s.batch_size}, {device}"
    )
    if info.get("trial"):
        log.info(trial_line(info["trial"]))
    if s.n is None and s.subset is None and device.type == "cpu":  # the whole split on a CPU: say what it costs
        guess = estimate(
            loaded.model, points.images, points.labels, attacks, num_classes=info["num_classes"], device=device
        )
        log.warning(guess.line("CPU", attacks) + (" (the sanity checks come on top)" if s.sanity else ""))
    result = evaluate(
        loaded.model,
        points.images,
        points.labels,
        points.rows,
        attacks=attacks,
        norm=s.norm,
        eps=eps,
        seed=s.seed,
        batch_size=s.batch_size,
        device=device,
        state=state,
        sanity=SanityConfig() if s.sanity else None,
        eps_grid=s.eps_grid,
        progress=progress,
    )
    model = {
        "checkpoint": str(checkpoint),
        "sha256": sha256,
        "epoch": loaded.epoch,
        "name": info["name"],
        "dataset": info["dataset"],
        "model_info": info,
        "trial": info.get("trial"),  # {rows, of} for a run trained on a trial store (extract --n)
    }
    report = build_report(
        result,
        model=model,
        data=points.description,
        wall_s=time.perf_counter() - start,
        state={"path": str(state.path), "resumed": state.restored},
    )
    json_path, md_path = write_reports(report, out)
    info_path = None
    if s.model_info:
        info_path = paths["model_info"]
        entry = model_info(report, name=Path(checkpoint).parent.name)
        atomic_write_text(info_path, json.dumps(entry, indent=2) + "\n")
    grid_path = paths["eps_grid"] if s.eps_grid else None
    return Written(report, result, json_path, md_path, state.path, info_path, grid_path)
