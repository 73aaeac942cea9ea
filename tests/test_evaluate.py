"""`dra-pipeline evaluate`: defaults, reports, per-point worst case, AutoAttack equivalence, seeds, resume, errors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.attacks import AUTOATTACK_STANDARD, Attack, build_attack
from dra_pipeline.evaluation.intervals import wilson
from dra_pipeline.evaluation.state import EvaluationState
from dra_pipeline.evaluation.worst_case import worst_case
from dra_pipeline.stages.evaluate import evaluate
from tests import evaluation_models as em
from tests import fixtures
from tests.hostile import write_checkpoint
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")


def write_run(directory: Path, *, favour: int | None = None, seed: int = 0) -> Path:
    """A run directory holding a random SmallCNN as best-ema.pt; `favour` biases it hard towards one class."""
    directory.mkdir(parents=True)
    return write_checkpoint(directory / "best-ema.pt", seed=seed, favour=favour)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """cwd with runs/old, runs/new (newest; predicts class 9, which no test image has, so AutoAttack has nothing
    to attack and the defaults run quickly) and runs/plain (random weights); a 12-image Fashion-MNIST test split."""
    data = tmp_path / "fashion-mnist"
    data.mkdir()
    for prefix, n, seed in (("train", 10, 1), ("t10k", 12, 2)):
        fixtures.write_idx(data / f"{prefix}-images-idx3-ubyte.gz", fixtures.random_images(n, 28, 28, 1, seed)[..., 0])
        fixtures.write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 9).astype(np.uint8))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRA_DATA_DIR", str(data))
    write_run(Path("runs/plain"), seed=2)
    os.utime(write_run(Path("runs/old"), seed=1), (1e9, 1e9))  # unmistakably older
    new = write_run(Path("runs/new"), favour=9)
    os.utime(new, (2e9, 2e9))  # unmistakably the newest
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(main, ["evaluate", *args])


def test_no_arguments_evaluates_the_newest_runs_best_ema_with_autoattack(workdir):
    result = invoke()
    assert result.exit_code == 0, result.output
    assert not Path("runs/old/report.json").exists()
    report = json.loads(Path("runs/new/report.json").read_text())
    assert report["model"]["checkpoint"] == "runs/new/best-ema.pt" and len(report["model"]["sha256"]) == 64
    expected = {"attacks": list(AUTOATTACK_STANDARD), "norm": "Linf", "eps": 0.1, "seed": 0, "batch_size": 500}
    assert {k: report["attack"][k] for k in expected} == expected  # the run's eps, AutoAttack standard
    assert report["data"]["source"] == "fashion-mnist:test" and report["data"]["n"] == 12  # the full split
    for key in ("clean", "robust"):
        assert report[key]["n"] == 12 and len(report[key]["ci95"]) == 2 and report[key]["interval"] == "Wilson"
    assert [a["attack"] for a in report["per_attack"]] == list(AUTOATTACK_STANDARD)
    assert report["per_attack"][3]["settings"]["n_queries"] == 5000
    assert report["environment"]["versions"]["pyautoattack"] and report["environment"]["device"] == "cpu"
    assert report["wall_s"] > 0 and report["sanity"] is None
    markdown = Path("runs/new/report.md").read_text()
    assert "| clean | 0.00 % | 0/12 |" in markdown and "| robust |" in markdown and "| square |" in markdown


def test_sanity_and_model_info_from_the_command_line(workdir):
    result = invoke("--run", "runs/new", "--sanity", "--model-info", "--out", "out/r.json")
    assert result.exit_code == 0, result.output
    report = json.loads(Path("out/r.json").read_text())
    assert len(report["sanity"]) == 7 and all(c["passed"] for c in report["sanity"])
    markdown = Path("out/r.md").read_text()
    assert "## Sanity checks" in markdown and "max \\|logit difference\\|" in markdown  # pipes escaped in cells
    for line in markdown.split("## Sanity checks")[1].splitlines():
        if line.startswith("| "):  # every row of the table has exactly its three cells
            assert line.replace("\\|", "").count("|") == 4, line
    info = json.loads(Path("out/r-model-info.json").read_text())
    assert info["name"] == "new" and info["eps"] == "0.1" and info["clean_acc"] == "0.00"
    assert info["autoattack_acc"] == "0.00" and info["dataset"] == "fashion-mnist" and info["unreliable"] is False


def test_rerun_resumes_from_the_state_file_and_other_settings_start_afresh(workdir):
    args = ["--run", "runs/plain", "--attack", "pgd,fgsm", "--batch-size", "1", "--out", "out/r.json"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "resuming" not in first.output and "pgd batch 1/" in first.output
    state = json.loads(Path("out/r.state.json").read_text())
    assert set(state["attacks"]) == {"pgd", "fgsm"}
    r0 = json.loads(Path("out/r.json").read_text())
    again = invoke(*args)
    assert again.exit_code == 0 and "resuming from out/r.state.json" in again.output
    r1 = json.loads(Path("out/r.json").read_text())
    batches = sum(p["batches_done"] for p in state["attacks"].values())
    assert r1["resume"]["restored_batches"] == batches > 0
    assert (r1["clean"], r1["robust"], r1["points"]) == (r0["clean"], r0["robust"], r0["points"])
    other = invoke(*args[:-2], "--seed", "1", "--out", "out/r.json")
    assert other.exit_code == 0 and "written for other settings" in other.output
    r2 = json.loads(Path("out/r.json").read_text())
    assert r2["resume"]["restored_batches"] == 0 and r2["attack"]["seed"] == 1
    assert r2["clean"] == r1["clean"]


BAD_INPUTS = [
    (["--checkpoint", "missing.pt"], "missing.pt not found"),
    (["--checkpoint", "foreign.pt"], "not a dra-pipeline training checkpoint"),
    (["--checkpoint", "garbage.pt"], "not a readable checkpoint"),
    (["--run", "runs/empty"], "no best-ema.pt"),
    (["--run", "runs/new", "--checkpoint", "runs/new/best-ema.pt"], "not both"),
    (["--attack", "apgd-cee"], "unknown attack 'apgd-cee'; did you mean 'apgd-ce'?"),
    (["--eps", "0"], "'--eps': '0' is not a positive finite number or a fraction such as 8/255"),
    (["--eps", "-0.1"], "'--eps': '-0.1' is not a positive"),
    (["--eps", "8/0"], "'--eps': '8/0' is not a positive"),
    (["--eps-grid", "0,x"], "expected a comma list of radius values, got '0,x'"),
    (["--n", "0"], "--n must be at least 1"),
    (["--n", "13"], "--n 13 exceeds the 12 images"),
    (["--norm", "L2", "--attack", "pgd"], "L-inf attacks"),
    (["--attack", "pgd", "--model-info"], "--model-info reports AutoAttack"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(workdir, args, message):
    torch.save([1, 2, 3], "foreign.pt")
    Path("garbage.pt").write_bytes(b"not a checkpoint")
    Path("runs/empty").mkdir()
    assert_one_line_error(invoke(*args), message)


def test_no_run_to_evaluate_is_one_clear_line(workdir):
    os.chdir(workdir / "fashion-mnist")  # no runs/ here
    assert_one_line_error(invoke(), "no run with a best-ema.pt under runs/")


class Breaks:
    """A stand-in attack that breaks exactly the given dataset rows (swaps in another class's prototype)."""

    def __init__(self, name, rows):
        self.name, self.rows, self.given = name, set(rows), []

    def __call__(self, x, y, rows, note=None):
        self.given += rows.tolist()
        pred = y.clone()
        for i, r in enumerate(rows.tolist()):
            if r in self.rows:
                pred[i] = (y[i] + 1) % 10
        return pred

    def attack(self):
        return Attack(self.name, {}, self)


def test_robust_accuracy_is_the_per_point_worst_case():
    x, y = em.synthetic(20)
    a, b = Breaks("a", {0, 1, 2}), Breaks("b", {2, 3, 4})
    result = worst_case(em.sensible(), x, y, torch.arange(20), [a.attack(), b.attack()], batch_size=6, device="cpu")
    assert result.clean.all()
    assert np.flatnonzero(~result.robust).tolist() == [0, 1, 2, 3, 4]  # either attack's success counts
    assert [(r.given, r.broken, r.robust_after) for r in result.attacks] == [(20, 3, 17), (17, 2, 15)]
    assert not {0, 1, 2} & set(b.given)  # the second attack is given only the points still robust


def test_cascade_equals_one_bare_autoattack_call():
    """Attacking one component per batch gives what one `run_standard_evaluation` gives (same batches, seed)."""
    from pyautoattack import AutoAttack

    x, y = em.synthetic(16, seed=5)
    model = em.sensible()
    bare = AutoAttack(model, norm="Linf", eps=0.07, version="standard", seed=0, device="cpu")
    bare.square.n_queries = 300  # both sides: Square's budget cut for speed
    _, y_adv = bare.run_standard_evaluation(x, y, batch_size=10)
    attacks = [
        build_attack(n, model, norm="Linf", eps=0.07, seed=0, device="cpu", n_queries=300) for n in AUTOATTACK_STANDARD
    ]
    ours = worst_case(model, x, y, torch.arange(16), attacks, batch_size=10, device="cpu")
    assert [r.given for r in ours.attacks] == [16, 12, 4, 4]  # every component has points to work on
    np.testing.assert_array_equal(ours.robust, (y_adv == y).numpy())
    assert [r.robust_after for r in ours.attacks] == sorted((r.robust_after for r in ours.attacks), reverse=True)


def test_same_seed_same_numbers_and_pgd_does_not_depend_on_the_batch_size():
    x, y = em.synthetic(30, seed=7)
    model = em.sensible()

    def run(seed, batch_size, attacks="apgd-ce,pgd"):
        return evaluate(
            model,
            x,
            y,
            torch.arange(30),
            attacks=attacks,
            norm="Linf",
            eps=0.05,
            seed=seed,
            batch_size=batch_size,
            device="cpu",
        ).worst

    a, b = run(3, 8), run(3, 8)
    np.testing.assert_array_equal(a.robust, b.robust)
    assert [r.broken for r in a.attacks] == [r.broken for r in b.attacks]
    np.testing.assert_array_equal(run(3, 5, "pgd").robust, run(3, 30, "pgd").robust)


def test_interrupted_evaluation_resumes_to_the_same_result(tmp_path):
    x, y = em.synthetic(24, seed=5)
    model = em.sensible()

    def attacks():
        return [build_attack(n, model, norm="Linf", eps=0.05, seed=0, device="cpu") for n in ("apgd-ce", "pgd")]

    whole = worst_case(model, x, y, torch.arange(24), attacks(), batch_size=8, device="cpu")
    path = tmp_path / "state.json"
    first = attacks()
    calls = []

    def interrupt_second_batch(xb, yb, rows, note=None, run=first[1].run):
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run(xb, yb, rows)

    first[1] = Attack("pgd", first[1].settings, interrupt_second_batch)
    with pytest.raises(KeyboardInterrupt):
        worst_case(
            model, x, y, torch.arange(24), first, batch_size=8, device="cpu", state=EvaluationState.open(path, key="k")
        )
    saved = json.loads(path.read_text())
    assert saved["attacks"]["apgd-ce"]["batches_done"] == 3 and saved["attacks"]["pgd"]["batches_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind

    second, counted = attacks(), []
    second = [
        Attack(
            a.name, a.settings, lambda xb, yb, r, note=None, run=a.run, n=a.name: counted.append(n) or run(xb, yb, r)
        )
        for a in second
    ]
    resumed = worst_case(
        model, x, y, torch.arange(24), second, batch_size=8, device="cpu", state=EvaluationState.open(path, key="k")
    )
    assert counted == ["pgd", "pgd"] and resumed.restored_batches == 4  # only pgd's two remaining batches
    np.testing.assert_array_equal(resumed.robust, whole.robust)
    assert [r.broken for r in resumed.attacks] == [r.broken for r in whole.attacks]


def test_state_files_that_cannot_be_resumed(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{trunc")
    with pytest.raises(DraError, match="not a readable evaluation state"):
        EvaluationState.open(path, key="k")
    path.write_text(json.dumps({"format": 1, "key": "other", "clean": None, "attacks": {}}))
    assert EvaluationState.open(path, key="k").discarded
    path.write_text(json.dumps({"format": 1, "key": "k", "clean": [False] * 10, "attacks": {}}))
    x, y = em.synthetic(10)
    with pytest.raises(DraError, match="clean predictions differ"):
        worst_case(
            em.sensible(),
            x,
            y,
            torch.arange(10),
            [],
            batch_size=4,
            device="cpu",
            state=EvaluationState.open(path, key="k"),
        )


def test_stage_refuses_train_mode_bad_eps_and_l2_pgd_but_runs_l2_apgd():
    x, y = em.synthetic(10)
    kw = dict(norm="Linf", eps=0.05, seed=0, batch_size=10, device="cpu")
    with pytest.raises(DraError, match="train mode"):
        evaluate(em.sensible().train(), x, y, torch.arange(10), attacks="pgd", **kw)
    with pytest.raises(DraError, match="eps must be positive"):
        evaluate(em.sensible(), x, y, torch.arange(10), attacks="pgd", **(kw | {"eps": 0.0}))
    with pytest.raises(DraError, match="L-inf attacks"):
        evaluate(em.sensible(), x, y, torch.arange(10), attacks="fgsm", **(kw | {"norm": "L2"}))
    l2 = evaluate(em.sensible(), x, y, torch.arange(10), attacks="apgd-ce", **(kw | {"norm": "L2", "eps": 0.5}))
    assert l2.worst.robust.sum() <= l2.worst.clean.sum() and l2.worst.attacks[0].settings["n_iter"] == 100


def test_wilson_interval():
    assert wilson(0, 10)[0] == 0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10)[1] == pytest.approx(1) and wilson(0, 0) == (0.0, 1.0)


def test_flags_of_an_interrupted_evaluation_are_still_reported():
    x, y = em.synthetic(10)
    state = EvaluationState("k", flags=["it seems to be a randomized defense! (earlier run)"])
    result = evaluate(
        em.sensible(),
        x,
        y,
        torch.arange(10),
        attacks="fgsm",
        norm="Linf",
        eps=0.05,
        seed=0,
        batch_size=10,
        device="cpu",
        state=state,
    )
    assert result.flags == ["it seems to be a randomized defense! (earlier run)"] and state.flags == result.flags


@pytest.mark.parametrize(("attack", "starts"), [("apgd-t", "target class"), ("fab-t", "restart 0 - target_class")])
def test_targeted_autoattack_components_report_each_target_class(attack, starts):
    """Within one batch the component's own progress arrives as notes: one per target class it attacks."""
    model, (x, y) = em.sensible(), em.synthetic(16)
    steps = []
    built = build_attack(attack, model, norm="Linf", eps=0.1, seed=0, device="cpu")
    worst_case(model, x, y, torch.arange(16), [built], batch_size=16, device="cpu", progress=steps.append)
    notes = [s.note for s in steps if s.note]
    assert 1 <= len(notes) <= 9 and all(note.startswith(starts) for note in notes), notes
    assert all(s.batches == 1 and s.robust <= s.n for s in steps)


def test_progress_lines_name_the_attack_its_batch_and_the_robust_count(workdir):
    result = invoke("--checkpoint", "runs/plain/best-ema.pt", "--attack", "apgd-ce,apgd-t", "--n", "12")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("  apgd-ce batch 1/1: starting, robust 16.67 % (2/12)") for line in lines), lines
    assert any(line.startswith("  apgd-t batch 1/1: target class") for line in lines), lines
    assert any(line.startswith("  apgd-t   robust") for line in lines), lines


def test_eps_grid_draws_accuracy_against_eps_on_the_same_points(workdir):
    """--eps-grid takes fractions; each radius gets one accuracy (the worst case up to it: non-increasing) in
    report.json and report.md, and <out stem>-eps-grid.png decodes; a file this tool did not write there is kept."""
    from PIL import Image

    grid = "0,1/255,2/255,4/255,8/255"
    args = ["--run", "runs/plain", "--attack", "fgsm", "--eps", "8/255", "--eps-grid", grid, "--out", "out/g.json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(Path("out/g.json").read_text())
    assert report["attack"]["eps"] == pytest.approx(8 / 255)
    curve = report["eps_grid"]
    assert curve["eps"] == pytest.approx([0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]) and curve["attack"] == "pgd-20"
    assert len(curve["robust"]) == len(curve["alone"]) == 5 and curve["n"] == 12
    assert all(b <= a for a, b in zip(curve["robust"], curve["robust"][1:]))
    assert curve["robust"][0] == report["clean"]["accuracy"]  # eps 0: the clean image alone
    with Image.open("out/g-eps-grid.png") as png:
        png.load()
        assert png.format == "PNG" and png.size[0] > 100
    markdown = Path("out/g.md").read_text()
    assert (
        "## Accuracy against eps (pgd-20, n 12)" in markdown
        and "![robust accuracy against eps](g-eps-grid.png)" in markdown
    )
    assert "out/g-eps-grid.png" in result.stdout and "pgd-20 robust accuracy by eps: 0 " in result.stdout

    assert invoke(*args).exit_code == 0  # its own figure is replaced
    Path("out/g-eps-grid.png").write_bytes(b"\x89PNG someone else's figure")
    refused = invoke(*args)
    assert_one_line_error(refused, "out/g-eps-grid.png exists and is a file this tool did not write")
    assert Path("out/g-eps-grid.png").read_bytes() == b"\x89PNG someone else's figure"
