"""The public API as a notebook uses it: `import dra_pipeline as d`, then extract, train and evaluate, and the two
loaders, on tiny fixtures (tiny-gray teacher, 80 Fashion-MNIST images, one short epoch, FGSM on 8 points)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import fixtures
from tests.test_train import FAST

pytestmark = pytest.mark.usefixtures("one_thread")


def test_import_is_light_and_every_function_is_documented_with_an_example():
    code = (
        "import sys, dra_pipeline as d; "
        "heavy = [m for m in ('torch', 'zarr', 'dra_pipeline.api') if m in sys.modules]; "
        "print(heavy, sorted(d.__all__)); help(d.train)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] ['__version__', 'evaluate', 'extract', 'load_classifier', 'load_store', 'train']")
    assert "Help on function train in module dra_pipeline.api" in out and ">>> d.train(" in out

    import dra_pipeline as d

    for name in d.API:
        doc = getattr(d, name).__doc__
        assert doc and ">>> import dra_pipeline as d" in doc and f"d.{name}(" in doc, name
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        d.trian  # noqa: B018


def test_a_notebook_extracts_trains_and_evaluates(tmp_path, monkeypatch):
    import dra_pipeline as d

    data = tmp_path / "fashion-mnist"
    fixtures.write_fashion_mnist(data, n_train=80, n_test=20)
    monkeypatch.chdir(tmp_path)

    settings = dict(data="fashion-mnist", data_dir=data, out="f.zarr", rows_per_shard=32, device="cpu")
    done = d.extract("tiny-gray", views="clean,flip", **settings)  # a comma list, as on the command line
    assert done.missing == 0 and done.rows == 80 and done.store.name == "f.zarr"
    store = d.load_store(done.store)
    assert tuple(done.views) == ("clean", "flip") and store.read([0, 79]).shape == (2, 2, done.dim)

    sets = [s for s in FAST if s != "--set"]
    run = d.train(done.store, config="fmnist-cpu", sets=sets, epochs=1, dra_weight=0.5, data_dir=data, out="runs/nb")
    assert run == Path("runs/nb")  # the run directory, as given
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in stats] == [1] and stats[0]["align"] > 0  # DRA on

    steps = []  # evaluate's progress is told each attack step
    grid = [0, 0.05, 0.1]
    written = d.evaluate(run, attack="fgsm", n=8, eps_grid=grid, device="cpu", data_dir=data, progress=steps.append)
    assert steps
    report = written.report
    assert report["robust"]["n"] == 8 and report["attack"]["attacks"] == ["fgsm"]
    assert written.json == run / "report.json" and written.markdown.is_file()
    assert len(report["eps_grid"]["robust"]) == 3 and written.eps_grid.is_file()

    loaded = d.load_classifier(run)  # a run directory: its best-ema.pt
    assert loaded.info["name"] == "small-cnn-16" and not loaded.model.training
    assert loaded.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert d.load_classifier(run / "best-ema.pt").epoch == loaded.epoch == 1


def test_extract_settings_refuse_teacher_labels_other_than_true_or_fixed():
    from dra_pipeline.errors import DraError
    from dra_pipeline.jobs.extract import ExtractSettings

    with pytest.raises(DraError, match="--teacher-labels must be one of true, fixed"):
        ExtractSettings("edm-fmnist", teacher_labels="True").check()
