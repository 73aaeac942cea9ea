"""Models, attacks and losses of stage two on small hand-checked cases."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dra_pipeline.errors import DraError
from dra_pipeline.losses import ProjectionHead, alignment_loss, pgd_at, trades, uniform_start
from dra_pipeline.models import create_model
from dra_pipeline.pgd import frozen_bn_stats, pgd_linf


def small_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small-cnn", dataset="fashion-mnist", num_classes=10, in_channels=1)


def test_pgd_on_a_linear_model_reaches_the_ball_corner():
    """For logits = x . w (one class), maximising the logit moves every pixel by +eps * sign(w) (inside [0, 1])."""
    w = torch.tensor([1.0, -2.0, 0.5, -0.1])
    model = nn.Linear(4, 1, bias=False)
    model.weight.data = w[None]
    x = torch.tensor([[0.5, 0.5, 0.98, 0.01]])
    x_adv = pgd_linf(model, x, lambda out: out.sum(), eps=0.1, step=0.03, steps=10, random_start=lambda t: t)
    torch.testing.assert_close(x_adv, torch.tensor([[0.6, 0.4, 1.0, 0.0]]))


def test_pgd_stays_in_the_ball_and_range_and_is_seeded():
    model = small_model().train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        runs.append(
            pgd_linf(
                model,
                x,
                lambda o: F.cross_entropy(o, y),
                eps=0.1,
                step=0.025,
                steps=5,
                random_start=uniform_start(0.1, g),
            )
        )
    x_adv = runs[0]
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.09, "the attack must use its budget"
    torch.testing.assert_close(runs[0], runs[1])
    assert model.training


def test_attack_leaves_bn_statistics_and_mode_untouched():
    model = small_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    pgd_linf(model, x, lambda o: F.cross_entropy(o, y), eps=0.1, step=0.025, steps=3, random_start=lambda t: t)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert model.training
    model.eval()
    pgd_linf(model, x, lambda o: F.cross_entropy(o, y), eps=0.1, step=0.025, steps=1, random_start=lambda t: t)
    assert not model.training
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with frozen_bn_stats(model):
        assert bn.momentum == 0.0
    assert bn.momentum == 0.1


def test_trades_matches_its_formula_and_updates_bn_only_in_the_outer_forwards():
    model = small_model()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    g = torch.Generator().manual_seed(0)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    tracked = bn.num_batches_tracked.item()
    out = trades(model.train(), x, y, eps=0.1, step=0.025, steps=3, beta=5.0, label_smoothing=0.1, generator=g)
    assert bn.num_batches_tracked.item() == tracked + 2  # the clean and adversarial outer forwards only
    natural = F.cross_entropy(out.logits_clean, y, label_smoothing=0.1)
    kl = F.softmax(out.logits_clean, 1) * (F.log_softmax(out.logits_clean, 1) - F.log_softmax(out.logits_adv, 1))
    torch.testing.assert_close(out.loss, natural + 5.0 * kl.sum(1).mean())
    assert out.features_adv.shape == (6, 200)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_pgd_at_loss_is_ce_on_adversarial_logits():
    model = small_model()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    out = pgd_at(
        model.train(),
        x,
        y,
        eps=0.1,
        step=0.025,
        steps=2,
        label_smoothing=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits_adv, y))


def test_alignment_loss_and_head():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    # cos: 1, -1, 1/sqrt(2) -> mean of (0, 2, 1 - 0.7071)
    assert alignment_loss(a, b).item() == pytest.approx((0 + 2 + 1 - 2**-0.5) / 3, rel=1e-6)
    head = ProjectionHead(200, 64, hidden=32)
    layers = [m for m in head.net]
    assert [type(m).__name__ for m in layers] == ["Linear", "SiLU", "Linear", "SiLU", "Linear"]
    assert head(torch.randn(5, 200)).shape == (5, 64)


@pytest.mark.parametrize(
    ("name", "dataset", "channels", "side", "dim", "params_m"),
    [
        ("wrn-28-10", "cifar10", 3, 32, 640, 36.48),
        ("preact-resnet-18", "cifar10", 3, 32, 512, 11.17),
        ("small-cnn", "fashion-mnist", 1, 28, 200, 0.31),
        ("small-cnn-16", "fashion-mnist", 1, 28, 200, 0.16),
        ("wrn-16-4", "fashion-mnist", 1, 28, 256, 2.75),
    ],
)
def test_models_shapes_and_sizes(name, dataset, channels, side, dim, params_m):
    model = create_model(name, dataset=dataset, num_classes=10, in_channels=channels)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.01)
    logits, feats = model.forward_with_features(torch.rand(2, channels, side, side))
    assert logits.shape == (2, 10) and feats.shape == (2, dim) and model.feature_dim == dim
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if name.startswith("wrn"):
        assert all(m.momentum == 0.01 for m in bns), "DM-AT's BN momentum"
        assert any(isinstance(m, nn.SiLU) for m in model.modules())


def test_large_models_build_with_published_sizes():
    with torch.device("meta"):
        wrn = create_model("wrn-70-16", dataset="cifar10", num_classes=10, in_channels=3)
        vit = create_model("vit-b-2", dataset="cifar10", num_classes=10, in_channels=3)
    assert sum(p.numel() for p in wrn.parameters()) / 1e6 == pytest.approx(266.8, abs=0.1)
    assert vit.feature_dim == 768


def test_normalisation_is_inside_the_model():
    model = create_model("small-cnn", dataset="fashion-mnist", num_classes=10, in_channels=1)
    assert model.mean.flatten().tolist() == pytest.approx([0.2860]) and model.std.flatten().tolist() == pytest.approx(
        [0.3530]
    )
    with pytest.raises(DraError, match="unknown model"):
        create_model("resnet-9000", dataset="cifar10", num_classes=10, in_channels=3)


def test_timm_student_loads_a_local_checkpoint_except_its_head(tmp_path):
    from dra_pipeline.models.timm_models import TimmClassifier, build_timm

    kw = dict(img_size=32, patch_size=8, num_classes=7, in_channels=3)
    source = build_timm("vit_tiny_patch16_224", **kw)
    torch.save({"model": source.state_dict()}, tmp_path / "dino.pth")
    student = build_timm("vit_tiny_patch16_224", checkpoint=tmp_path / "dino.pth", **{**kw, "num_classes": 10})
    torch.testing.assert_close(
        student.state_dict()["blocks.0.attn.qkv.weight"], source.state_dict()["blocks.0.attn.qkv.weight"]
    )
    assert student.get_classifier().out_features == 10
    model = TimmClassifier(student, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    logits, feats = model.forward_with_features(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and feats.shape == (2, model.feature_dim)
    other = build_timm("vit_small_patch16_224", img_size=32, patch_size=8, num_classes=10, in_channels=3)
    torch.save(other.state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(DraError, match="does not match"):
        build_timm("vit_tiny_patch16_224", checkpoint=tmp_path / "wrong.pth", **kw)
