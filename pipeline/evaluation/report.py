"""report.json and report.md for an evaluation, and the optional RobustBench-style model-info JSON.

The JSON holds everything needed to judge and reproduce the figure: clean and robust accuracy with n and a 95 %
Wilson interval, the robust accuracy after each attack of the cascade, eps, norm, seed, batch size, every
attack's settings, AutoAttack's flags, the sanity checks, the model and data provenance, package versions,
device and wall time, and per-point outcomes (np.packbits of the clean and robust flags, row i = bit i, as hex)
so that two models evaluated on the same points can be compared pairwise.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from dra_pipeline.atomic import atomic_write_text
from dra_pipeline.environment import environment
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.intervals import Accuracy


def build_report(evaluation, *, model: dict, data: dict, wall_s: float, state: dict | None = None) -> dict:
    """The report as a dict. `evaluation` is a stages.evaluate.Evaluation; `model` and `data` describe what was
    evaluated (checkpoint, hash, model_info; source, fingerprint, rows); `state` where progress was kept."""
    worst = evaluation.worst
    n = len(worst.clean)
    clean = Accuracy(int(worst.clean.sum()), n)
    robust = Accuracy(int(worst.robust.sum()), n)
    cascade = [
        {
            "attack": a.name,
            "given": a.given,
            "broken": a.broken,
            "robust_after": Accuracy(a.robust_after, n).to_dict(),
            "seconds": round(a.seconds, 3),
            "settings": a.settings,
        }
        for a in worst.attacks
    ]
    return {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": model,
        "trial": model.get("trial"),  # {rows, of}: the model was trained on a --limit store's first rows
        "data": data,
        "attack": {
            "attacks": [a.name for a in worst.attacks],
            "norm": evaluation.norm,
            "eps": evaluation.eps,
            "seed": evaluation.seed,
            "batch_size": evaluation.batch_size,
            "worst_case": "per point: robust only if correct on the clean image and under every attack",
        },
        "clean": clean.to_dict(),
        "robust": robust.to_dict(),
        "per_attack": cascade,
        "autoattack_flags": evaluation.flags,
        "sanity": None if evaluation.sanity is None else [c.to_dict() for c in evaluation.sanity],
        "environment": environment(evaluation.device),
        "wall_s": round(wall_s, 3),
        "attack_s": round(sum(a.seconds for a in worst.attacks), 3),
        "resume": {**(state or {}), "restored_batches": worst.restored_batches},
        "points": {
            "encoding": "hex of numpy.packbits(flags) (big-endian bit order); row i of the points is bit i",
            "clean": np.packbits(worst.clean).tobytes().hex(),
            "robust": np.packbits(worst.robust).tobytes().hex(),
        },
    }


def trial_line(trial: dict) -> str:
    """What a report says of a model trained on a --limit store: 'trial run: trained on N of M rows'."""
    return f"trial run: trained on {trial['rows']:,} of {trial['of']:,} rows (a --limit store); not a full result"


def point_flags(report: dict, which: str) -> np.ndarray:
    """The per-point `which` ("clean" or "robust") outcomes of a report as bools, shape (n,), row i = point i."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(report["points"][which]), dtype=np.uint8))
    return bits[: report[which]["n"]].astype(bool)


def _pct(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{100 * d['accuracy']:.2f} % | {d['correct']}/{d['n']} | {100 * lo:.1f}-{100 * hi:.1f} %"


def render_markdown(report: dict) -> str:
    a, m, d, env = report["attack"], report["model"], report["data"], report["environment"]
    lines = [
        f"# Evaluation of {m.get('checkpoint', 'a model')}",
        "",
        f"{m.get('name', '?')} on {d.get('source', '?')} ({d.get('selection', '')}), {a['norm']} eps {a['eps']:g}, "
        f"seed {a['seed']}, batch size {a['batch_size']}. Robust accuracy is the per-point worst case over "
        f"{', '.join(a['attacks']) or 'no attack'}.",
        *(["", f"**{trial_line(report['trial']).capitalize()}.**"] if report.get("trial") else []),
        "",
        "| | accuracy | correct / n | 95 % CI (Wilson) |",
        "|---|---:|---:|---:|",
        f"| clean | {_pct(report['clean'])} |",
        f"| robust | {_pct(report['robust'])} |",
        "",
        "| after attack | robust accuracy | correct / n | 95 % CI | given | broken | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cascade = report["per_attack"]
    lines += [
        f"| {c['attack']} | {_pct(c['robust_after'])} | {c['given']} | {c['broken']} | {c['seconds']:.1f} |"
        for c in cascade
    ]
    lines += ["", "Attack settings:", ""]
    lines += [f"- {c['attack']}: " + ", ".join(f"{k} {v}" for k, v in c["settings"].items()) for c in cascade]
    flags = report["autoattack_flags"]
    lines += ["", "AutoAttack flags: " + ("none" if not flags else ""), *[f"- {f}" for f in flags]]
    if report["sanity"] is not None:
        lines += ["", "## Sanity checks", "", "| check | result | measured |", "|---|---|---|"]
        for c in report["sanity"]:
            detail = c["detail"].replace("|", "\\|")  # a bare | would end the table cell
            lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {detail} |")
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    restored = report["resume"].get("restored_batches", 0)
    lines += [
        "",
        f"Machine: {env['device_name']} ({env['device']}, {env['torch_threads']} torch threads); {versions}.",
        f"Wall time {report['wall_s']:.1f} s (attacks {report['attack_s']:.1f} s, summed over resumed runs)"
        + (f"; {restored} batches restored from the saved state." if restored else "."),
        f"Checkpoint sha256 {m.get('sha256', '?')[:16]}, data fingerprint {d.get('fingerprint', '?')}; "
        f"written {report['created']}.",
        "",
    ]
    return "\n".join(lines)


REPORT_KEYS = ("model", "data", "attack", "clean", "robust", "points")  # every report.json holds these
MODEL_INFO_KEYS = ("threat_model", "autoattack_acc", "clean_acc")  # and every model-info JSON these
STATE_KEYS = ("format", "key", "attacks")  # and every resumable evaluation state (evaluation/state.py)
_MAX_REPORT_BYTES = 64 << 20  # a larger file is not one of our reports (and is not read to find out)


def report_paths(json_path: Path) -> dict[str, Path]:
    """Every file an evaluation writes for `json_path`: report JSON, report.md, resumable state, model info."""
    json_path = Path(json_path)
    return {
        "json": json_path,
        "markdown": json_path.with_suffix(".md"),
        "state": json_path.with_name(json_path.stem + ".state.json"),
        "model_info": json_path.with_name(json_path.stem + "-model-info.json"),
    }


def check_report_target(json_path: Path, *, model_info: bool = False) -> None:
    """Refuse (one DraError line) a report path that would replace anything but an earlier report of this tool:
    a checkpoint, a store, a folder, any other file. `json_path` must end in .json; the siblings written with it
    (report_paths: report.md, the resumable state, and with model_info the model-info JSON) are checked too."""
    json_path = Path(json_path)
    if json_path.suffix != ".json":
        raise DraError(f"--out {json_path}: a report is a .json file (report.md is written beside it)")
    paths = report_paths(json_path)
    ours = {
        "json": _holds_keys(REPORT_KEYS),
        "markdown": _is_report_markdown,
        "state": _holds_keys(STATE_KEYS),
        "model_info": _holds_keys(MODEL_INFO_KEYS),
    }
    for kind, is_ours in ours.items():
        path = paths[kind]
        if kind == "model_info" and not model_info:
            continue
        if path.exists() and not (path.is_file() and is_ours(path)):
            what = "a folder" if path.is_dir() else "a file this tool did not write as a report"
            raise DraError(f"{path} exists and is {what}; it is left alone: choose another --out")


def _holds_keys(keys: tuple[str, ...]):
    def check(path: Path) -> bool:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return False
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and all(k in d for k in keys)

    return check


def _is_report_markdown(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"# Evaluation of "
    except OSError:
        return False


def write_reports(report: dict, json_path: Path) -> tuple[Path, Path]:
    """report.json at `json_path` and report.md beside it (same stem), each replaced atomically."""
    json_path = Path(json_path)
    md_path = report_paths(json_path)["markdown"]
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path


def model_info(report: dict, *, name: str) -> dict:
    """A RobustBench-style model-info entry (their model_info/<dataset>/<threat>/<name>.json fields). Fields only
    the authors know (paper link, venue, extra data) are left empty to fill in by hand."""
    a, m = report["attack"], report["model"]
    return {
        "link": "",
        "name": name,
        "authors": "",
        "additional_data": None,
        "number_forward_passes": 1,
        "dataset": m.get("dataset"),
        "venue": "",
        "architecture": m.get("name"),
        "eps": f"{a['eps']:g}",
        "threat_model": a["norm"],
        "clean_acc": f"{100 * report['clean']['accuracy']:.2f}",
        "reported": "",
        "autoattack_acc": f"{100 * report['robust']['accuracy']:.2f}",
        "n_points": report["robust"]["n"],
        "footnote": f"AutoAttack standard (pyautoattack), seed {a['seed']}, first {report['robust']['n']} test points"
        + (f"; {trial_line(report['trial'])}" if report.get("trial") else ""),
        "unreliable": any(not c["passed"] for c in report["sanity"] or []) or bool(report["autoattack_flags"]),
    }
