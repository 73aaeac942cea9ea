"""bench/mfu.py: FLOPs of a whole TRADES step counted by FlopCounterMode, the peak table, MFU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dra_pipeline.config import load_config
from dra_pipeline.losses import trades
from dra_pipeline.models import create_model
from dra_pipeline.models.base import Classifier
from dra_pipeline.stages.train import build_state, training_step

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load_mfu():
    spec = importlib.util.spec_from_file_location("mfu", BENCH / "mfu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mfu", module)
    spec.loader.exec_module(module)
    return module


mfu = _load_mfu()


class Linear(Classifier):
    """logits = W x: one matrix product per forward, so every FLOP of a TRADES step can be counted by hand."""

    def __init__(self, d: int, k: int):
        super().__init__((0.5,), (0.25,))
        self.feature_dim = d
        self.head = nn.Linear(d, k, bias=False)

    def features(self, x):
        return self.normalise(x).flatten(1)


@pytest.mark.parametrize("steps", [1, 10])
def test_trades_step_flops_match_a_hand_count(steps):
    """Per image, with F = 2 d k the FLOPs of x -> W x: the clean pass for p_clean (F), each attack step's forward
    and gradient with respect to the input only (2 F), the outer loss's two forwards (2 F) and the weight gradient
    of each (2 F; the input needs none): (2 steps + 5) F."""
    torch.manual_seed(0)
    d, k, n = 64, 10, 4
    model = Linear(d, k)
    x, y = torch.rand(n, 1, 8, 8), torch.randint(0, k, (n,))

    def step():
        out = trades(model, x, y, eps=0.1, step=0.025, steps=steps, beta=5.0, label_smoothing=0.1)
        out.loss.backward()

    assert mfu.count_flops(step) == n * (2 * steps + 5) * 2 * d * k


def test_training_step_flops_double_with_the_batch():
    """The bench's count: one whole `training_step` (TRADES-10 + the DRA head + backward) of a real model."""
    cfg = load_config("fmnist-cpu", ("dra.weight=0.5", "train.device=cpu"))

    class Batch:
        def __init__(self, n):
            g = torch.Generator().manual_seed(n)
            self.images = torch.rand(n, 1, 28, 28, generator=g)
            self.labels = torch.randint(0, 10, (n,), generator=g)
            self.targets = torch.randn(n, 64, generator=g)
            self.rows, self.flipped = np.arange(n), np.zeros(n, dtype=bool)

    def flops(n: int) -> int:
        torch.manual_seed(0)
        model = create_model("small-cnn-16", dataset="fashion-mnist", num_classes=10, in_channels=1)
        state = build_state(cfg, model, 64, 10, model_info={})
        batch = Batch(n)
        return mfu.count_flops(lambda: training_step(cfg, state, model.train(), batch, step=1, steps_per_epoch=10))

    small, large = flops(2), flops(4)
    assert small > 0 and large == 2 * small


@pytest.mark.parametrize(
    ("name", "peak", "bf16"),
    [
        ("NVIDIA H200", "H200 SXM", 989.5),
        ("NVIDIA H200 NVL", "H200 NVL", 835.5),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA L40S", "L40S", 362.05),
        ("NVIDIA L4", "L4", 121.0),
    ],
)
def test_peak_table_matches_gpu_names_most_specific_first(name, peak, bf16):
    found = mfu.device_peak(name)
    assert found.name == peak and found.bf16 == bf16
    assert found.tf32 == pytest.approx(found.bf16 / 2, rel=0.02)  # dense TF32 is half of dense BF16 on these


def test_unknown_device_has_no_peak_unless_given():
    assert mfu.device_peak("AMD EPYC") is None
    none = mfu.choose_peak(None, "fp32")
    assert none.tflops is None and none.label == "n/a (no peak known; pass --peak-tflops)"
    given = mfu.choose_peak(None, "fp32", 100.0)
    assert given.tflops == 100.0
    assert mfu.choose_peak("NVIDIA H200", "tf32").tflops == 494.5


def test_step_precision_and_mfu():
    assert mfu.step_precision("bf16", "cuda", True) == "bf16"
    assert mfu.step_precision("fp32", "cuda", True) == "tf32"
    assert mfu.step_precision("fp32", "cuda", False) == "fp32"
    assert mfu.step_precision("fp32", "cpu", True) == "fp32"
    # 300 GFLOP per image at 1000 img/s on a 989.5 TFLOP/s peak
    assert mfu.mfu(300e9, 1000, 989.5) == pytest.approx(300e12 / 989.5e12)
