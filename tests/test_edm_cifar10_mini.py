"""edm-cifar10-mini: the network `teacher fit --net cifar-mini` builds, and the teacher spec that reads its packaged
weights or says in one line how to make them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.errors import DraError
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.edm_checkpoint import save_denoiser
from dra_pipeline.teachers.fit import NETWORKS
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

CIFAR_MINI = SongUNetConfig(img_resolution=32, img_channels=3, label_dim=10, **NETWORKS["cifar-mini"])


def test_cifar_mini_ema_weights_stay_under_25_mb_and_16_mib():
    """25 MB: issue 16's budget for a packaged teacher; 16 MiB: the largest file a time-limited GPU host sends back."""
    params = sum(p.numel() for p in EDMDenoiser(CIFAR_MINI).parameters())
    assert params == 3_954_563  # the count NETWORKS' comment and the teacher's description give (3.95 M)
    assert 4 * params < 25e6 and 4 * params < 16 * 2**20


def test_missing_weights_name_how_to_make_them_in_one_line(tmp_path, monkeypatch):
    import dra_pipeline.teachers.edm as edm

    monkeypatch.setattr(edm, "WEIGHTS_DIR", tmp_path)  # an install without the packaged file
    with pytest.raises(DraError) as err:
        create_teacher("edm-cifar10-mini")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("edm-cifar10-mini: its weights are not packaged")
    assert "bash bench/gpu_record.sh --phases teacher" in message and "--checkpoint" in message


def test_a_fitted_checkpoint_gives_128_d_features_at_the_last_8x8_block(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ema.safetensors"
    save_denoiser(EDMDenoiser(CIFAR_MINI), path)
    teacher = create_teacher("edm-cifar10-mini", checkpoint=path)
    spec = teacher_spec("edm-cifar10-mini")
    assert (teacher.layer, spec.dim, spec.dataset, spec.label_dim) == ("dec.8x8_block2", 128, "cifar10", 10)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    features = teacher(images, np.array([3, 7]), np.arange(2))
    assert features.shape == (2, 1, 128) and torch.isfinite(features).all()


def test_teacher_list_shows_it():
    out = CliRunner().invoke(main, ["teacher", "list"])
    assert out.exit_code == 0
    line = next(ln for ln in out.output.splitlines() if ln.startswith("edm-cifar10-mini "))
    assert "cifar10" in line and "dec.8x8_block2" in line and "128" in line
