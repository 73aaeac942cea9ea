"""Trial runs: a trial store (extract --n) trains on the rows it covers, validation among them, and the run says it
is a trial in its config, checkpoint and evaluation report; `evaluate` of a whole split on a CPU first says what
it costs."""

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.evaluation.estimate import duration, estimate, passes
from dra_pipeline.models import create_model
from tests import fixtures
from tests.test_train import extract_store, train_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def trial_run(tmp_path):
    """A 40-row trial store of an 80-image Fashion-MNIST fixture and a 1-epoch run trained on it."""
    data = tmp_path / "fashion-mnist"
    fixtures.write_fashion_mnist(data, n_train=80, n_test=20)
    store = tmp_path / "trial.zarr"
    extract_store(data, store, "--n", "40")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(data, run, "--lambda", "0.5", epochs=1, features=store))
    assert result.exit_code == 0, result.output
    return data, store, run, result.output


def test_trial_path_extract_limit_train_evaluate_n_and_the_report_says_trial(trial_run, monkeypatch):
    data, store, run, output = trial_run
    assert "trial run:" in output and "covers 40 of 80 rows" in output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trial"] == {"rows": 40, "of": 80}
    info = torch.load(run / "best-ema.pt", weights_only=True)["model_info"]
    assert info["trial"] == {"rows": 40, "of": 80} and info["dataset"] == "fashion-mnist"
    assert info["normalisation"]["name"] == "fashion-mnist"  # a named dataset keeps its published values
    stats = json.loads((run / "stats.jsonl").read_text().splitlines()[0])
    assert stats["val_n"] == 16  # data.validation=16, drawn from the 40 covered rows

    # only the covered rows are read: a row beyond them would have no stored target
    from dra_pipeline.data import batches

    seen = []
    real_batch = batches.BatchLoader.batch

    def spy(self, epoch, index):
        out = real_batch(self, epoch, index)
        seen.append(out.rows)
        return out

    monkeypatch.setattr(batches.BatchLoader, "batch", spy)
    again = train_args(data, run.parent / "again", "--lambda", "0.5", epochs=1, features=store)
    assert CliRunner().invoke(main, again).exit_code == 0
    rows = np.concatenate(seen)
    assert rows.max() < 40 and not np.isin(rows, np.arange(16)).any()  # covered rows, validation (first 16) held out

    args = [
        "evaluate",
        "--run",
        str(run),
        "--n",
        "6",
        "--attack",
        "apgd-ce",
        "--device",
        "cpu",
        "--data-dir",
        str(data),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trial run: trained on 40 of 80 rows" in result.output and "estimate:" not in result.output  # --n given
    report = json.loads((run / "report.json").read_text())
    assert report["trial"] == {"rows": 40, "of": 80} and report["robust"]["n"] == 6
    assert "Trial run: trained on 40 of 80 rows" in (run / "report.md").read_text()


def test_evaluate_without_n_on_a_cpu_prints_an_estimate_first_and_asks_nothing(trial_run):
    data, _, run, _ = trial_run
    args = ["evaluate", "--run", str(run), "--attack", "fgsm", "--device", "cpu", "--data-dir", str(data)]
    result = CliRunner().invoke(main, args, input="")  # nothing to answer: a prompt would fail here
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()  # messages and progress go to stderr, in order
    line = next(i for i, text in enumerate(lines) if text.startswith("estimate: "))
    assert "for 20 points (fgsm)" in lines[line] and "measured on 20" in lines[line]
    assert "pass --n to evaluate fewer" in lines[line]
    assert line < next(i for i, text in enumerate(lines) if "fgsm batch 1/1: starting" in text)  # before the attack
    assert json.loads((run / "report.json").read_text())["robust"]["n"] == 20  # and the whole split is evaluated


def test_estimate_scales_with_the_passes_each_attack_makes():
    torch.manual_seed(0)
    model = create_model("small-cnn-16", dataset="fashion-mnist", num_classes=10, in_channels=1).eval()
    images, labels = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    fgsm = estimate(model, images, labels, ["fgsm"], num_classes=10, device="cpu")
    aa = estimate(model, images, labels, ["apgd-ce", "apgd-t", "fab-t", "square"], num_classes=10, device="cpu")
    assert fgsm.sample == aa.sample == 32 and fgsm.n == 40
    assert 0 < fgsm.low_s <= fgsm.high_s < aa.high_s and aa.low_s <= aa.high_s
    assert passes("apgd-t", 10) == (900, 0) and passes("apgd-t", 3) == (200, 0)  # 9 targets, fewer with few classes
    assert (duration(40), duration(720), duration(9000), duration(3 * 86400)) == ("40 s", "12 min", "2.5 h", "3.0 days")
