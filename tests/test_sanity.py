"""`evaluate --sanity`: every check passes on a sensible model and trips on a model broken on purpose."""

import pytest
import torch
from torch import nn

from dra_pipeline.evaluation.sanity import SanityConfig, run_sanity
from tests import evaluation_models as em

CONFIG = SanityConfig(n=64, square_queries=300)  # Square's budget cut from 5000 to keep the test fast
X, Y = em.synthetic(64)
CHECKS = {
    "eps-grid",
    "chance-at-large-eps",
    "more-steps",
    "white-box-vs-square",
    "repeatable",
    "batch-size-invariant",
    "autoattack-flags",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def sanity(model, eps, flags=()):
    torch.manual_seed(0)  # the random layer's draws
    checks = run_sanity(
        model,
        X,
        Y,
        torch.arange(len(X)),
        norm="Linf",
        eps=eps,
        seed=0,
        device="cpu",
        batch_size=64,
        config=CONFIG,
        flags=flags,
    )
    return {c.name: c for c in checks}


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_sensible_model_passes_every_check(eps):
    checks = sanity(em.sensible(), eps)
    assert set(checks) == CHECKS
    assert all(c.passed for c in checks.values()), [c.detail for c in checks.values() if not c.passed]
    grid = checks["eps-grid"].values["accuracy"]
    assert grid[0] == 1.0 and grid[-1] == 0.0  # the attacks do have work to do on this model


# model, eps, checks that must fail, text the AutoAttack flags must contain
BROKEN = {
    "rounded inputs": (
        lambda: em.Rounded(em.sensible()),
        0.1,
        {"chance-at-large-eps", "white-box-vs-square", "autoattack-flags"},
        "zero gradient",
    ),
    "softmax outputs": (lambda: em.Softmax(em.sensible()), 0.1, {"autoattack-flags"}, "probability distribution"),
    "random layer": (
        lambda: em.Noisy(em.sensible()),
        0.1,
        {"repeatable", "batch-size-invariant", "autoattack-flags"},
        "randomized defense",
    ),
    "batch norm in train mode": (em.bn_in_train_mode, 0.1, {"batch-size-invariant"}, None),
    "memorising past tau": (
        lambda: em.Memorising(em.sensible(), X, Y, tau=0.15),
        0.2,
        {"eps-grid", "more-steps", "chance-at-large-eps"},
        None,
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_trips_its_checks(case):
    make, eps, trips, flag = BROKEN[case]
    checks = sanity(make(), eps)
    failed = {name for name, c in checks.items() if not c.passed}
    assert trips <= failed, {name: checks[name].detail for name in trips - failed}
    if flag:
        assert flag in checks["autoattack-flags"].detail


def test_every_check_has_a_broken_model_that_trips_it():
    assert set().union(*(trips for _, _, trips, _ in BROKEN.values())) == CHECKS


def test_batch_size_check_reports_a_model_that_refuses_a_batch_of_one():
    class BatchNorm1dInTrainMode(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.bn = em.sensible(), nn.BatchNorm1d(10).train()

        def forward(self, x):
            return self.bn(self.net(x))

    check = sanity(BatchNorm1dInTrainMode(), 0.1)["batch-size-invariant"]
    assert not check.passed and "batch size 1 raised ValueError" in check.detail


def test_flags_seen_during_the_evaluation_fail_the_flags_check():
    check = sanity(em.sensible(), 0.1, flags=["there are 3 points with zero gradient!"])["autoattack-flags"]
    assert not check.passed and "zero gradient" in check.detail


def test_a_channels_last_wideresnet_passes_every_check():
    """As `evaluate` loads it on the CPU (checkpoints.load_classifier): NHWC memory, whose input gradients a plain
    .view cannot flatten."""
    from dra_pipeline.models import create_model

    torch.manual_seed(0)
    model = create_model("wrn-16-4", dataset="cifar10", num_classes=10, in_channels=3).eval().requires_grad_(False)
    model.to(memory_format=torch.channels_last)
    x, y = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    config = SanityConfig(n=16, grid_steps=5, chance_steps=10, many_steps=20, square_queries=50, batch_sizes=(1, 16))
    kw = dict(norm="Linf", eps=8 / 255, seed=0, device="cpu", batch_size=16, config=config, flags=())
    checks = run_sanity(model, x, y, torch.arange(16), **kw)
    failed = {c.name: c.detail for c in checks if not c.passed}
    assert {c.name for c in checks} == CHECKS and failed == {}
