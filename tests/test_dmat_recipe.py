"""The DM-AT recipe item by item (docs/recipe.md): each test fails if its item drifts from DM-AT's released code."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dra_pipeline.config import load_config
from dra_pipeline.data.batches import BatchPlan, rotate, target_views
from dra_pipeline.losses import ProjectionHead, alignment_loss
from dra_pipeline.models import create_model
from dra_pipeline.pgd import cw_loss
from dra_pipeline.stages.train import build_state, ema_decay, robust_accuracy, training_step, update_ema

DMAT = "dmat-cifar10-1m-wrn28-10-dra"

pytestmark = pytest.mark.usefixtures("one_thread")


def small_wrn():
    torch.manual_seed(0)
    return create_model("wrn-16-4", dataset="cifar10", num_classes=10, in_channels=3)


# ---- learning rate and momentum: PyTorch's OneCycleLR, stepped once per epoch -----------------------------------
def test_lr_and_momentum_per_epoch_equal_onecyclelr():
    cfg = load_config(DMAT)
    state = build_state(cfg, small_wrn(), 256, 98, model_info={})
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9, nesterov=True)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.2, pct_start=0.025, total_steps=400)
    seen = {}
    for epoch in range(400):
        group, ref = state.optimizer.param_groups[0], reference.param_groups[0]
        assert (group["lr"], group["momentum"]) == (ref["lr"], ref["momentum"])
        seen[epoch + 1] = (group["lr"], group["momentum"])
        state.optimizer.step(), reference.step()
        state.scheduler.step(), onecycle.step()
    # DM-AT's numbers: lr / 25 at epoch 1, the peak at epoch 10 (momentum 0.85 there), lr / 25 / 1e4 at the end
    assert seen[1] == pytest.approx((0.2 / 25, 0.95))
    assert seen[10] == pytest.approx((0.2, 0.85))
    assert seen[400][0] == pytest.approx(0.2 / 25 / 1e4) and seen[400][1] == pytest.approx(0.95)


def test_batch_norm_parameters_have_no_weight_decay_and_the_head_its_own():
    cfg = load_config(DMAT)
    model = small_wrn()
    state = build_state(cfg, model, 256, 98, model_info={})
    decay, no_decay, head = state.optimizer.param_groups
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in no_decay["params"]} == bn and no_decay["weight_decay"] == 0
    assert (
        decay["weight_decay"] == 5e-4 and decay["nesterov"] and id(model.head.bias) in {id(p) for p in decay["params"]}
    )
    assert {id(p) for p in head["params"]} == {id(p) for p in state.head.parameters()} and head["weight_decay"] == 0


# ---- initialisation ------------------------------------------------------------------------------------------------
def test_a_fresh_wideresnet_is_initialised_as_dm_at_does():
    model = small_wrn()
    conv = model.blocks[1].conv1  # 3x3, 64 -> 64 channels
    expected = math.sqrt(2 / (3 * 3 * 64))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.03)
    assert conv.weight.mean().abs().item() < 0.01 * expected
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert torch.all(model.head.bias == 0) and model.head.weight.abs().max() <= 1 / math.sqrt(model.feature_dim)


def test_the_projection_head_is_xavier_initialised_with_zero_bias():
    torch.manual_seed(0)
    head = ProjectionHead(640, 256, 2048)
    first = head.net[0]
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / (640 + 2048)), rel=0.02)
    assert all(torch.all(m.bias == 0) for m in head.net if isinstance(m, nn.Linear))


# ---- best checkpoint: CW PGD-40 on the EMA, ties to the later epoch ------------------------------------------------
def test_cw_loss_is_dm_ats_margin():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.0, 4.0]])
    y = torch.tensor([0, 2, 2])
    # -max(z_y - max_other, 0) per row: -(2 - 1), -max(1 - 3, 0) = 0, -(4 - 1)
    assert cw_loss(logits, y).item() == pytest.approx(-4.0)


def test_validation_uses_the_cw_loss_and_can_differ_from_cross_entropy():
    torch.manual_seed(0)
    model = create_model("small-cnn-nobn", dataset="fashion-mnist", num_classes=10, in_channels=1).eval()
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    kw = dict(eps=0.3, step=0.05, steps=5)
    cw, ce = robust_accuracy(model, x, y, loss="cw", **kw), robust_accuracy(model, x, y, loss="ce", **kw)
    assert cw[0] == ce[0]  # the same clean accuracy
    assert 0 <= cw[1] <= cw[0]


def test_a_tie_in_validation_accuracy_goes_to_the_later_epoch(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import dra_pipeline.stages.train as stage
    from dra_pipeline.cli import main
    from tests import fixtures

    fixtures.write_fashion_mnist(tmp_path / "fm", n_train=96, n_test=8)
    monkeypatch.setattr(stage, "robust_accuracy", lambda *a, **k: (0.5, 0.25))  # every epoch ties
    args = ["train", "--config", "fmnist-cpu", "--data-dir", str(tmp_path / "fm"), "--out", str(tmp_path / "run")]
    sets = ["data.validation=16", "data.epoch_images=32", "train.batch_size=16", "train.epochs=3", "attack.steps=1"]
    result = CliRunner().invoke(main, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "run" / "best-ema.pt", weights_only=True)["epoch"] == 3


# ---- EMA and the first step ----------------------------------------------------------------------------------------
def test_ema_copies_the_model_through_its_warm_up_then_ramps():
    warmup = 0.025 * 400 * 98  # DM-AT: 980 steps, the first 10 epochs
    assert [ema_decay(s, cap=0.995, warmup_steps=warmup) for s in (1, 500, 979)] == [0.0, 0.0, 0.0]
    assert ema_decay(980, cap=0.995, warmup_steps=warmup) == pytest.approx(0.1)
    assert ema_decay(1000, cap=0.995, warmup_steps=warmup) == pytest.approx(21 / 30)
    assert ema_decay(2770, cap=0.995, warmup_steps=warmup) == pytest.approx(0.995)
    assert ema_decay(10**6, cap=0.995, warmup_steps=warmup) == 0.995
    model, ema = small_wrn(), small_wrn()
    for p in model.parameters():
        p.data.add_(1.0)
    update_ema(ema, model, ema_decay(1, cap=0.995, warmup_steps=warmup))
    assert all(torch.equal(e, p) for e, p in zip(ema.state_dict().values(), model.state_dict().values()))


class _Batch:
    def __init__(self, x, y):
        self.images, self.labels, self.targets = x, y, None
        self.rows, self.flipped = np.arange(len(x)), np.zeros(len(x), bool)


def test_batch_norm_statistics_start_at_the_first_steps_batch():
    cfg = load_config("fmnist-cpu", ("attack.steps=1",))
    torch.manual_seed(0)
    model = create_model("small-cnn", dataset="fashion-mnist", num_classes=10, in_channels=1)
    state = build_state(cfg, model, None, 10, model_info={})
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    seen = []  # the batch mean bn normalised with, at every forward that updates its running statistics
    bn.register_forward_pre_hook(lambda m, i: seen.append(i[0].mean((0, 2, 3)).detach()) if m.momentum else None)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    m = bn.momentum  # SmallCNN keeps PyTorch's 0.1 (the WideResNets have DM-AT's 0.01)
    training_step(cfg, state, model.train(), _Batch(x, y), step=0, steps_per_epoch=10)
    assert bn.momentum == m and len(seen) == 2  # the clean and the adversarial forward; the attack does not count
    torch.testing.assert_close(bn.running_mean, seen[-1])  # momentum 1: the last batch's statistics
    before = bn.running_mean.clone()
    training_step(cfg, state, model, _Batch(x, y), step=1, steps_per_epoch=10)
    torch.testing.assert_close(bn.running_mean, (1 - m) ** 2 * before + (1 - m) * m * seen[-2] + m * seen[-1])


# ---- batches -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "synthetic"), [(512, 358), (1024, 716), (2048, 1433)])
def test_synthetic_images_per_batch_are_truncated_as_dm_at_does(batch, synthetic):
    plan = BatchPlan(
        np.arange(100), np.arange(100, 200), batch_size=batch, synthetic_fraction=0.7, steps_per_epoch=1, seed=0
    )
    assert plan.n_synthetic == synthetic and (plan.rows(0, 0) >= 100).sum() == synthetic


@pytest.mark.parametrize("angle", [15.0, -7.5, 90.0, 3.0])
def test_rotation_equals_torchvisions_nearest_rotate(angle):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import rotate as tv_rotate

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    ours = rotate(images, np.array([angle, angle]))
    theirs = tv_rotate(torch.from_numpy(images).permute(0, 3, 1, 2), angle, InterpolationMode.NEAREST)
    assert np.mean(ours != theirs.permute(0, 2, 3, 1).numpy()) < 0.01  # grid rounding may differ on a few pixels


# ---- DRA with several views ----------------------------------------------------------------------------------------
def test_two_view_alignment_is_the_mean_of_the_two_cosine_terms():
    projected = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]]])  # (N=2, K=2, dim=2)
    # image 0: cos 1 and 0 -> terms 0 and 1; image 1: cos 1 and 0 -> terms 0 and 1; mean 0.5
    assert alignment_loss(projected, targets).item() == pytest.approx(0.5)
    assert alignment_loss(projected, targets[:, 0]).item() == pytest.approx(0.0)


def test_an_extra_sigma_view_is_added_or_replaces_the_clean_target():
    views = ["clean", "flip", "extra-sigma"]
    assert target_views(views, "add") == ([0, 2], [1, 2])
    assert target_views(views, "replace") == ([2], [1])
    assert target_views(["clean", "flip"], "add") == ([0], [1])
    assert target_views(["clean"], "add") == ([0], [0])


def test_training_targets_hold_both_views_of_each_row():
    from dra_pipeline.data.batches import BatchLoader

    class Store:
        layout = type("L", (), {"views": ("clean", "flip", "extra-sigma")})

        @staticmethod
        def read(rows):
            return np.stack([rows * 10.0 + v for v in range(3)], 1)[:, :, None].repeat(4, 2)  # (n, 3 views, 4)

    class Images:
        @staticmethod
        def read(rows):
            return np.zeros((len(rows), 8, 8, 1), np.uint8), np.zeros(len(rows), np.int64)

    plan = BatchPlan(np.arange(40), np.arange(0), batch_size=8, synthetic_fraction=0, steps_per_epoch=1, seed=0)
    batch = BatchLoader(plan, Images(), store=Store(), padding=0, flip=True).batch(0, 0)
    assert batch.targets.shape == (8, 2, 4) and batch.flipped.any() and not batch.flipped.all()
    for row, flipped, target in zip(batch.rows, batch.flipped, batch.targets):
        assert target[:, 0].tolist() == [row * 10 + (1 if flipped else 0), row * 10 + 2]


def test_dmat_preset_trains_in_fp32_with_the_onecycle_schedule():
    cfg = load_config(DMAT)
    t = cfg.train
    assert (t.precision, t.schedule, t.schedule_unit, t.warmup, t.cycle_momentum) == (
        "fp32",
        "onecycle",
        "epoch",
        0.025,
        True,
    )
    assert (t.ema_decay, t.ema_warmup, t.first_batch_bn_stats, cfg.attack.val_loss) == (0.995, 0.025, True, "cw")
    assert cfg.dra.extra_sigma == "add" and cfg.dra.weight_decay == 0
    assert load_config("dmat-cifar100-1m-wrn28-10").data.rotation == 15
