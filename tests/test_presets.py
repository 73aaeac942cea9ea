"""The real-scale presets resolve, build their models, and take one TRADES-DRA step (tiny batch, CPU)."""

import pytest
import torch

from dra_pipeline.config import PRESETS_DIR, apply_overrides, load_config
from dra_pipeline.errors import DraError
from dra_pipeline.losses import alignment_loss, trades
from dra_pipeline.models import create_model
from dra_pipeline.stages.train import build_state

PRESETS = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_resolves(preset):
    cfg = load_config(preset)
    assert cfg.train.batch_size > 0 and cfg.attack.eps > 0


def test_dmat_recipe_values():
    cfg = load_config("dmat-cifar10-1m-wrn28-10-dra")
    assert (cfg.model.name, cfg.train.batch_size, cfg.train.epochs, cfg.train.lr) == ("wrn-28-10", 512, 400, 0.2)
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.attack.step == pytest.approx(2 / 255)
    assert (cfg.train.beta, cfg.train.label_smoothing, cfg.train.ema_decay) == (5.0, 0.1, 0.995)
    assert cfg.data.synthetic_fraction == 0.7 and cfg.data.epoch_images == 50000 and cfg.data.validation == 1024
    assert cfg.dra.weight > 0 and load_config("dmat-cifar10-1m-wrn28-10").dra.weight == 0


def test_overrides_are_type_checked():
    cfg = load_config("fmnist-cpu", ("attack.eps=8/255", "train.epochs=3", "data.flip=false"))
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.train.epochs == 3 and cfg.data.flip is False
    with pytest.raises(DraError, match="train.epochs must be int"):
        apply_overrides(cfg, {"train.epochs": "many"})
    with pytest.raises(DraError, match="train.loss must be one of"):
        apply_overrides(cfg, {"train.loss": "mart"})
    with pytest.raises(DraError, match="not found"):
        load_config("no-such-preset")


@pytest.mark.parametrize(
    ("preset", "attack_steps", "dataset", "side", "dim"),
    [
        ("dmat-cifar10-1m-wrn28-10-dra", 10, "cifar10", 32, 256),
        ("vit-b2-cifar10", 1, "cifar10", 32, 256),
        pytest.param("imagenet-convnext-b-dra", 3, "imagenet", 224, 1152, marks=pytest.mark.slow),
    ],
)
def test_one_trades_dra_step_at_full_model_size(preset, attack_steps, dataset, side, dim):
    cfg = load_config(preset)
    torch.manual_seed(0)
    classes = 1000 if dataset == "imagenet" else 10
    model = create_model(cfg.model.name, dataset=dataset, num_classes=classes, in_channels=3)
    state = build_state(cfg, model, dim, 10, model_info={})
    x, y, target = torch.rand(2, 3, side, side), torch.tensor([3, 7]), torch.randn(2, dim)
    before = [p.detach().clone() for p in model.parameters()]
    a = cfg.attack
    out = trades(
        model.train(),
        x,
        y,
        eps=a.eps,
        step=a.step,
        steps=attack_steps,
        beta=cfg.train.beta,
        label_smoothing=cfg.train.label_smoothing,
        generator=torch.Generator().manual_seed(0),
    )
    loss = out.loss + cfg.dra.weight * alignment_loss(state.head(out.features_adv), target)
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    assert torch.isfinite(loss) and out.features_adv.shape == (2, model.feature_dim)
    assert sum(not torch.equal(b, p) for b, p in zip(before, model.parameters())) > len(before) // 2
