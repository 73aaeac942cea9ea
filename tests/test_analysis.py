"""`analyze`: each metric on a case whose answer is known, and the command end to end on a tiny run."""

import math
import re

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dra_pipeline.analysis import ANALYSES
from dra_pipeline.analysis.align_uniform import alignment, uniformity
from dra_pipeline.analysis.cknna import cknna, mutual_knn
from dra_pipeline.analysis.cls_dimension import classification_dimension
from dra_pipeline.analysis.frequency import fourier_map
from dra_pipeline.analysis.sae import sae_sweep
from dra_pipeline.cli import main
from tests import fixtures
from tests.hostile import extract_args, invoke, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_uniformity_of_points_spread_evenly_on_a_circle():
    n, t = 1000, 2.0
    angle = 2 * math.pi * torch.arange(n) / n
    points = 3.0 * torch.stack([angle.cos(), angle.sin()], 1)  # any radius: representations are normalised
    # ||u_i - u_j||^2 = 2 - 2 cos(theta_i - theta_j); the n - 1 other points of each point, averaged
    exact = math.log(sum(math.exp(-2 * t * (1 - math.cos(2 * math.pi * k / n))) for k in range(1, n)) / (n - 1))
    assert uniformity(points, t=t) == pytest.approx(exact, abs=1e-9)
    # continuum limit: E_theta exp(-2t (1 - cos theta)) = exp(-2t) I_0(2t)
    assert uniformity(points, t=t) == pytest.approx(-2 * t + math.log(np.i0(2 * t)), abs=1e-2)
    assert uniformity(torch.ones(10, 3)) == pytest.approx(0.0, abs=1e-12)  # all coincide: the maximum


def test_alignment_of_identical_pairs_is_zero_and_of_opposite_pairs_four():
    a = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    assert alignment(a, a) == 0.0
    assert alignment(a, 2.5 * a) == pytest.approx(0.0, abs=1e-12)  # scale does not matter after normalising
    assert alignment(a, -a) == pytest.approx(4.0)


def test_classification_dimension_of_data_in_a_k_dimensional_subspace():
    g = torch.Generator().manual_seed(0)
    k, dim, n = 5, 20, 2000
    basis = torch.linalg.qr(torch.randn(dim, k, generator=g))[0]  # (dim, k) orthonormal
    features = torch.randn(n, k, generator=g) @ basis.T
    head = torch.nn.Linear(dim, 10)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        labels = head(features).argmax(1)
    off = torch.randn(n, dim, generator=g)
    off = off - off @ basis @ basis.T  # a perturbation orthogonal to the subspace
    with torch.no_grad():
        result = classification_dimension(features, labels, head, adv_features=features + 2 * off)
    assert result.accuracy[-1] == 1.0 and result.accuracy[k] == 1.0
    assert (result.accuracy[:k] < 0.95).all()
    assert result.cls == {"95": k, "99": k}
    assert result.explained[k - 1] == pytest.approx(1.0)
    assert result.adv_accuracy[-1] < 0.95  # the off-subspace perturbation hurts the full model...
    assert result.adv_accuracy[k] == 1.0  # ...and projecting onto the clean components removes it


def test_cknna_of_a_representation_with_itself_is_one_and_of_independent_ones_near_zero():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 32, generator=g), torch.randn(500, 16, generator=g)
    rotation = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]
    assert cknna(a, a) == pytest.approx(1.0, abs=1e-12)
    assert cknna(a, 3 * a @ rotation) == pytest.approx(1.0, abs=1e-9)  # cosine kernels: rotation and scale
    assert abs(cknna(a, b)) < 0.1
    assert mutual_knn(a, a) == 1.0 and mutual_knn(a, b) < 0.1
    assert 0.2 < cknna(a, a + 0.5 * torch.randn(500, 32, generator=g)) < 1.0


def test_sae_with_k_at_least_the_intrinsic_dimension_reconstructs_almost_perfectly():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 3, generator=g))[0]
    x = torch.randn(2000, 3, generator=g) @ basis.T + 0.5  # intrinsic dimension 3 in 16, off-centre
    result = sae_sweep(x[:1500], {"test": x[1500:]}, [1, 3], expansion=2, steps=600, lr=1e-2)
    one, three = result.nmse["test"]
    assert three < 1e-3, result
    assert one > 0.05, result  # one active latent cannot describe a 3-d spread


def test_frequency_map_of_a_single_frequency_peaks_there():
    h = w = 28
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    delta = torch.cos(2 * math.pi * (3 * i / h + 5 * j / w)).expand(4, 1, h, w)
    m = fourier_map(delta)
    fy, fx = m.peak()
    assert (round(fy * h), round(fx * w)) in {(3, 5), (-3, -5)}  # a real cosine: the peak and its mirror
    c = (h // 2, w // 2)
    assert m.magnitude[c[0] + 3, c[1] + 5] == pytest.approx(h * w / 2)
    assert m.magnitude[c[0] - 3, c[1] - 5] == pytest.approx(h * w / 2)
    assert np.sort(m.magnitude.ravel())[-3] < 1e-9  # nothing anywhere else


def test_teacher_features_equal_the_teacher_and_carry_gradients():
    from dra_pipeline.analysis.teacher_features import teacher_features
    from dra_pipeline.teachers import create_teacher

    teacher = create_teacher("tiny-gray", seed=3)
    images = fixtures.random_images(4, 28, 28, 1, seed=5)
    rows = np.array([7, 70, 700, 7000])
    expected = teacher(images, np.zeros(4, dtype=np.int64), rows)[:, 0]
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).requires_grad_(True)
    z = teacher_features(teacher, x, rows)
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(z.sum(), x)
    assert grad.abs().sum() > 0


def test_probe_module_is_differentiable_for_pgd():
    from dra_pipeline.linear_probe import fit_linear_probe

    g = torch.Generator().manual_seed(1)
    centres = 2 * torch.randn(3, 6, generator=g)
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 6, generator=g)
    probe = fit_linear_probe(x[:200], y[:200], num_classes=3)
    z = x[200:].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(probe(z), y[200:]), z)
    assert grad.abs().sum() > 0 and (probe(x[200:]).argmax(1) == y[200:]).double().mean() > 0.9


# ---- the command ----------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path):
    """A Fashion-MNIST-format folder, a tiny-gray store of its training split (clean and flip views), and a run
    directory holding a small-cnn best-ema.pt whose config names the store."""
    data = tmp_path / "fashion-mnist"
    fixtures.write_fashion_mnist(data, n_train=40, n_test=20)
    store = tmp_path / "f.zarr"
    result = invoke(*extract_args(data, store, "--views", "clean,flip", rows_per_shard=20))
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "tiny"
    write_checkpoint(run / "best-ema.pt")
    (run / "config.yaml").write_text(yaml.safe_dump({"features": str(store)}))
    return run, data, store


def test_analyze_writes_every_figure_and_the_markdown_shows_them(tiny_run):
    run, data, _ = tiny_run
    args = [
        "analyze",
        "--run",
        str(run),
        "--n",
        "16",
        "--probe-n",
        "4",
        "--pgd-steps",
        "2",
        "--sae-steps",
        "20",
        "--data-dir",
        str(data),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = run / "analysis"
    md = (out / "analysis.md").read_text()
    for name in (spec.figure for spec in ANALYSES.values()):
        assert (out / name).stat().st_size > 1000, name
        assert f"]({name})" in md, name
    import json

    record = json.loads((out / "analysis.json").read_text())
    assert set(record["results"]) == set(ANALYSES)
    au = record["results"]["align-uniform"]
    assert au["teacher_stored"]["alignment"] is not None  # the store has a flip view
    assert 0 <= au["classifier"]["alignment"] <= 4
    assert record["results"]["cls-dim"]["dim"] == 200
    assert record["n_test"] == 16 and record["n_train"] == 16
    assert isinstance(record["notes"], list) and "cknna" in record["analysis_notes"]  # the run's notes are kept
    assert record["results"]["teacher-probe"]["stored_features_probe"]["n_train"] == 8


def test_analyze_bad_input_gives_one_clear_line(tmp_path, tiny_run):
    from dra_pipeline.cache import FeatureStore

    run, data, _ = tiny_run
    result = CliRunner().invoke(main, ["analyze", "--run", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: run {tmp_path / 'nope'} not found"]

    other = tmp_path / "cifar.zarr"
    source = {
        "kind": "cifar10",
        "path": "/x",
        "split": "train",
        "count": 20,
        "image_shape": [32, 32, 3],
        "num_classes": 10,
        "fingerprint": "f",
    }
    store = FeatureStore.create(
        other,
        sources=[source],
        labels=np.arange(20) % 10,
        views=["clean"],
        dim=8,
        meta={"teacher": "tiny"},
        rows_per_shard=20,
    )
    store.write_shard(0, np.ones((20, 1, 8), dtype=np.float16))
    result = CliRunner().invoke(main, ["analyze", "--run", str(run), "--features", str(other), "--data-dir", str(data)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and re.search(r"cifar10 .*fashion-mnist", lines[0])

    result = CliRunner().invoke(main, ["analyze", "--run", str(run), "--what", "cknna,bogus"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "unknown analyses ['bogus']" in lines[0]
