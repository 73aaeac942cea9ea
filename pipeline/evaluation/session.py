"""One evaluation of a checkpoint with its files: load it (weights_only), take the points, resume or start the
state, run the stage, write report.json, report.md and optionally the model-info JSON. The command is a thin
layer over this, and bench/evaluate_overhead.py times exactly this path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.checkpoints import load_classifier
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.inputs import file_sha256, load_points
from dra_pipeline.evaluation.report import build_report, model_info, write_reports
from dra_pipeline.evaluation.sanity import SanityConfig
from dra_pipeline.evaluation.state import EvaluationState, state_key
from dra_pipeline.evaluation.worst_case import Step


@dataclass(frozen=True)
class Written:
    report: dict
    evaluation: object  # stages.evaluate.Evaluation
    json: Path
    markdown: Path
    state: Path
    model_info: Path | None


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    attacks: list[str],
    norm: str,
    eps: float | None,
    n: int | None,
    split: str,
    batch_size: int,
    seed: int,
    device: torch.device,
    out: Path | None,
    sanity: SanityConfig | None = None,
    robustbench: bool = False,
    data_dir=None,
    data: str | None = None,
    preprocessing: str | None = None,
    selection: str | None = None,
    subset: Path | None = None,
    echo: Callable[[str], None] = print,
    progress: Callable[[Step], None] | None = None,
) -> Written:
    """Evaluate `checkpoint` (eps None: the eps it trained at) on n images of its dataset's `split`, or of `data`
    (see evaluation.inputs.load_points for preprocessing, selection and subset); reports go to `out` (default:
    report.json beside the checkpoint), progress to <out stem>.state.json."""
    import pyautoattack

    from dra_pipeline.stages.evaluate import evaluate

    start = time.perf_counter()
    loaded = load_classifier(checkpoint, device)
    info = loaded.info
    eps = info.get("eps") if eps is None else eps
    if eps is None:
        raise DraError(f"{checkpoint} records no training eps; pass --eps")
    points = load_points(
        info["dataset"],
        split,
        n,
        data=data,
        preprocessing=preprocessing,
        selection=selection,
        subset=subset,
        data_dir=data_dir,
        image_size=info.get("image_size"),
        channels=info["in_channels"],
    )
    out = Path(out) if out else Path(checkpoint).parent / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    sha256 = file_sha256(checkpoint)
    data = {k: v for k, v in points.description.items() if k != "path"}
    key = state_key(
        checkpoint_sha256=sha256,
        data=data,
        attacks=attacks,
        norm=norm,
        eps=eps,
        seed=seed,
        batch_size=batch_size,
        device=device.type,
        pyautoattack=pyautoattack.__version__,
    )
    state = EvaluationState.open(out.with_name(out.stem + ".state.json"), key=key)
    if state.discarded:
        echo(f"{state.path}: {state.discarded}; starting afresh")
    elif state.restored:
        echo(f"resuming from {state.path}")
    echo(
        f"{checkpoint} ({info['name']}, epoch {loaded.epoch}) on {data['source']} {data['selection']}: "
        f"{', '.join(attacks)}, {norm} eps {eps:g}, seed {seed}, batch {batch_size}, {device}"
    )
    result = evaluate(
        loaded.model,
        points.images,
        points.labels,
        points.rows,
        attacks=attacks,
        norm=norm,
        eps=eps,
        seed=seed,
        batch_size=batch_size,
        device=device,
        state=state,
        sanity=sanity,
        progress=progress,
    )
    model = {
        "checkpoint": str(checkpoint),
        "sha256": sha256,
        "epoch": loaded.epoch,
        "name": info["name"],
        "dataset": info["dataset"],
        "model_info": info,
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
    if robustbench:
        info_path = out.with_name(out.stem + "-model-info.json")
        entry = model_info(report, name=Path(checkpoint).parent.name)
        atomic_write_text(info_path, json.dumps(entry, indent=2) + "\n")
    return Written(report, result, json_path, md_path, state.path, info_path)
