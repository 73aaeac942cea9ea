"""experiments/compare.py's summary: mean +- std over seeds and DRA's effect paired by seed, from report.json files."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline.evaluation.report import point_flags

N = 100
FOUR = ["at", "at-dra", "dmat", "dmat-dra"]


def _load_compare():
    path = Path(__file__).resolve().parents[1] / "experiments" / "compare.py"
    spec = importlib.util.spec_from_file_location("compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_report(run_dir: Path, robust_rows: range, clean: int) -> None:
    """A report.json with the fields the summary reads; points in the documented packbits-hex encoding."""
    flags = np.zeros(N, dtype=bool)
    flags[list(robust_rows)] = True
    run_dir.mkdir(parents=True)
    clean_flags = np.ones(N, dtype=bool)
    report = {
        "clean": {"accuracy": clean / N, "n": N},
        "robust": {"accuracy": flags.mean(), "n": N},
        "wall_s": 1.0,
        "points": {"clean": np.packbits(clean_flags).tobytes().hex(), "robust": np.packbits(flags).tobytes().hex()},
    }
    (run_dir / "report.json").write_text(json.dumps(report))


def test_point_flags_decode_the_reports_packbits_hex():
    flags = np.random.default_rng(0).random(13) < 0.5  # n not a multiple of 8: padding bits must be dropped
    report = {"robust": {"n": 13}, "points": {"robust": np.packbits(flags).tobytes().hex()}}
    assert np.array_equal(point_flags(report, "robust"), flags)


def test_summary_gives_mean_std_over_seeds_and_dras_paired_effect(tmp_path, capsys):
    compare = _load_compare()
    args = argparse.Namespace(
        root=tmp_path, methods=FOUR, seeds=[0, 1], weight=0.5, sweep=[], sweep_seeds=[0], attack="autoattack"
    )
    # robust rows per (method, seed): AT+DRA gains 1 then 3 points over AT; DM-AT+DRA loses 2 on seed 0 only
    runs = {
        "at-l0-s0": (range(0, 50), 70),
        "at-dra-l0.5-s0": (range(0, 51), 72),
        "at-l0-s1": (range(0, 52), 74),
        "at-dra-l0.5-s1": (range(2, 57), 74),
        "dmat-l0-s0": (range(0, 60), 80),
        "dmat-dra-l0.5-s0": (range(0, 58), 80),
        "dmat-l0-s1": (range(0, 60), 80),
        "dmat-dra-l0.5-s1": (range(0, 60), 80),
    }
    for name, (rows, clean) in runs.items():
        _write_report(tmp_path / name, rows, clean)

    compare.summarise(compare.jobs(args), args)

    table = {t["method"]: t for t in json.loads((tmp_path / "results.json").read_text())["table"]}
    assert table["at"]["autoattack_mean"] == pytest.approx(0.51)
    assert table["at"]["autoattack_std"] == pytest.approx(np.std([0.50, 0.52], ddof=1))
    assert table["at-dra"]["clean_mean"] == pytest.approx(0.73)
    assert table["at-dra"]["seeds"] == [0, 1]
    md = (tmp_path / "results.md").read_text()
    assert md == capsys.readouterr().out
    effect = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if " - " in line.split(" | ")[0]}
    # AT + DRA - AT: clean +2, 0 -> 1.00 +- 1.41; robust +1, +3 -> 2.00 +- 1.41; seed 1: rows 52-56 only with
    # DRA, rows 0-1 only without
    assert effect["at-dra - at"] == "| at-dra - at | 0,1 | 1.00 +- 1.41 | 2.00 +- 1.41 | +1.00, +3.00 | 1 / 0, 5 / 2 |"
    assert effect["dmat-dra - dmat"] == (
        "| dmat-dra - dmat | 0,1 | 0.00 +- 0.00 | -1.00 +- 1.41 | -2.00, +0.00 | 0 / 2, 0 / 0 |"
    )


def test_summary_of_a_partial_experiment_has_no_spread_and_no_unpaired_effect(tmp_path, capsys):
    compare = _load_compare()
    args = argparse.Namespace(
        root=tmp_path, methods=FOUR, seeds=[0, 1], weight=0.5, sweep=[], sweep_seeds=[0], attack="autoattack"
    )
    _write_report(tmp_path / "at-l0-s0", range(0, 50), 70)
    _write_report(tmp_path / "dmat-dra-l0.5-s0", range(0, 55), 75)  # its DM-AT partner not evaluated yet

    compare.summarise(compare.jobs(args), args)

    md = capsys.readouterr().out
    assert "| at | 0 | 0 | 70.00 | 50.00 | 100 |" in md
    assert "2 of 8 runs evaluated." in md
    assert "paired by training seed" not in md


def test_a_sweep_on_its_own_trains_only_the_sweep_and_analyses_nothing():
    compare = _load_compare()
    args = argparse.Namespace(methods=FOUR, seeds=[], weight=0.5, sweep=[0.25, 1.0], sweep_seeds=[0])
    all_jobs = compare.jobs(args)
    assert [j["name"] for j in all_jobs] == ["dmat-dra-l0.25-s0", "dmat-dra-l1-s0"]
    assert compare.first_seed_runs(all_jobs, args) == []
    args.seeds = [3]
    assert [j["name"] for j in compare.first_seed_runs(compare.jobs(args), args)] == [
        "at-l0-s3",
        "at-dra-l0.5-s3",
        "dmat-l0-s3",
        "dmat-dra-l0.5-s3",
    ]


def test_summary_of_two_methods_pairs_at_dra_with_at_and_gives_wall_times(tmp_path, capsys):
    """--methods at,at-dra (the CIFAR-10 test): two methods, DRA's effect over AT paired by seed, per-run wall times
    from report.json and stats.jsonl, and no DM-AT rows or pairs."""
    compare = _load_compare()
    args = argparse.Namespace(
        root=tmp_path, methods=["at", "at-dra"], seeds=[0, 1], weight=0.5, sweep=[], sweep_seeds=[0], attack="aa"
    )
    all_jobs = compare.jobs(args)
    assert [j["name"] for j in all_jobs] == ["at-l0-s0", "at-dra-l0.5-s0", "at-l0-s1", "at-dra-l0.5-s1"]
    assert [j["name"] for j in compare.first_seed_runs(all_jobs, args)] == ["at-l0-s0", "at-dra-l0.5-s0"]
    for name, rows, clean in [
        ("at-l0-s0", range(0, 40), 80),
        ("at-dra-l0.5-s0", range(0, 44), 81),
        ("at-l0-s1", range(0, 42), 79),
        ("at-dra-l0.5-s1", range(1, 42), 80),
    ]:
        _write_report(tmp_path / name, rows, clean)
    (tmp_path / "at-l0-s0" / "stats.jsonl").write_text('{"epoch": 1, "epoch_s": 10.5}\n{"epoch": 2, "epoch_s": 11.0}\n')

    compare.summarise(all_jobs, args)

    md = capsys.readouterr().out
    assert "| at | 0 | 0,1 | 79.50 +- 0.71 | 41.00 +- 1.41 | 100 |" in md
    assert "| at-dra | 0.5 | 0,1 | 80.50 +- 0.71 | 42.50 +- 2.12 | 100 |" in md
    assert "| at-l0-s0 | 80.00 | 40.00 | 100 | 22 | 1 |" in md  # train 10.5 + 11.0 s; evaluate 1.0 s
    assert "| at-dra-l0.5-s1 | 80.00 | 41.00 | 100 | - | 1 |" in md
    # seed 0: +4 points, rows 40-43 robust only with DRA; seed 1: -1 point, row 0 robust only without
    assert "| at-dra - at | 0,1 | 1.00 +- 0.00 | 1.50 +- 3.54 | +4.00, -1.00 | 4 / 0, 0 / 1 |" in md
    assert "dmat" not in md
    assert "4 of 4 runs evaluated." in md


def test_a_run_with_a_report_is_done_even_without_its_checkpoints(tmp_path, monkeypatch):
    """Records brought back from another machine hold report.json but no checkpoint: nothing is run again."""
    compare = _load_compare()
    args = argparse.Namespace(root=tmp_path, methods=["at"], seeds=[0], weight=0.5, sweep=[], sweep_seeds=[0])
    job = compare.jobs(args)[0]
    _write_report(tmp_path / job["name"], range(0, 10), 50)
    monkeypatch.setattr(compare, "run", lambda *a, **k: pytest.fail("a finished run was started again"))
    compare.train_and_evaluate(job, args)


def test_unknown_methods_are_refused_in_one_line():
    compare = _load_compare()
    with pytest.raises(SystemExit, match="--methods takes a comma list of at, at-dra, dmat, dmat-dra"):
        compare.parse_methods("at,pgd")
