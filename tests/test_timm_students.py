"""timm students with timm's pretrained weights by name (`model.checkpoint: timm:ARCH.TAG`), read offline from a hub
cache laid out here, in timm's own repo layout (timm/ARCH.TAG holding model.safetensors)."""

import pytest
import torch
from safetensors.torch import save_file

from dra_pipeline.errors import DraError
from dra_pipeline.models.timm_models import build_timm
from tests import hub_cache

NAME = "test_convnext.r160_in1k"  # one of timm's tiny test models with published weights


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("DRA_OFFLINE")  # HF_HUB_OFFLINE=1 alone keeps the hub offline
    return tmp_path / "hf"


def test_pretrained_weights_by_timm_name_come_from_the_hub_cache(hub, tmp_path):
    import timm

    torch.manual_seed(0)
    published = timm.create_model("test_convnext", pretrained=False).state_dict()  # 1000 ImageNet classes
    save_file(published, tmp_path / "model.safetensors")
    hub_cache.add_repo(hub, f"timm/{NAME}", {"model.safetensors": tmp_path / "model.safetensors"})

    model = build_timm("test_convnext", num_classes=10, in_channels=3, checkpoint=f"timm:{NAME}")
    state = model.state_dict()
    backbone = [k for k in published if not k.startswith("head.fc.")]
    assert backbone and all(torch.equal(state[k], published[k]) for k in backbone)
    assert state["head.fc.weight"].shape == (10, published["head.fc.weight"].shape[1])  # a new head, 10 classes


def test_pretrained_name_errors_are_one_line(hub):
    with pytest.raises(DraError) as wrong:
        build_timm("test_convnext", num_classes=10, in_channels=3, checkpoint="timm:test_vit.r160_in1k")
    assert "not pretrained weights of test_convnext" in str(wrong.value) and NAME in str(wrong.value)
    with pytest.raises(DraError) as missing:
        build_timm("test_convnext", num_classes=10, in_channels=3, checkpoint=f"timm:{NAME}")
    message = str(missing.value)
    assert f"https://huggingface.co/timm/{NAME}/resolve/main/model.safetensors (or pytorch_model.bin)" in message
    assert message.startswith("HF_HUB_OFFLINE=1: ") and "\n" not in message


# ---- any timm architecture as a student: model.name timm:ARCH ------------------------------------------------------
class _Batch:
    def __init__(self, x, y, targets):
        self.images, self.labels, self.targets = x, y, targets
        self.rows, self.flipped = torch.arange(len(x)).numpy(), torch.zeros(len(x), dtype=torch.bool).numpy()


def test_a_timm_architecture_takes_a_trades_dra_step(tmp_path):
    """resnet10t (not in the registry) on 28 x 28 grey images: its DRA feature is forward_features + its own pooling,
    one TRADES-1 + DRA step changes the network and the head, and a checkpoint of it loads back by its name."""
    from dra_pipeline import checkpoints
    from dra_pipeline.config import load_config
    from dra_pipeline.models import create_model
    from dra_pipeline.stages.train import build_state, training_step

    torch.manual_seed(0)
    model = create_model("timm:resnet10t", dataset="fashion-mnist", num_classes=10, in_channels=1)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    logits, feats = model.forward_with_features(x)
    net = model.backbone
    pooled = net.forward_head(net.forward_features(model.normalise(x)), pre_logits=True)
    assert logits.shape == (4, 10) and feats.shape == (4, 512) == pooled.shape and model.feature_dim == 512
    torch.testing.assert_close(feats, pooled)

    cfg = load_config("fmnist-cpu", ("attack.steps=1", "dra.weight=0.5", "dra.hidden=32"))
    info = {"name": "timm:resnet10t", "dataset": "fashion-mnist", "num_classes": 10, "in_channels": 1}
    info |= {"image_size": [28, 28], "eps": cfg.attack.eps}
    state = build_state(cfg, model, 16, 10, model_info=info)
    before = [[p.detach().clone() for p in m.parameters()] for m in (model, state.head)]
    out = training_step(cfg, state, model.train(), _Batch(x, y, torch.randn(4, 1, 16)), step=0, steps_per_epoch=10)
    assert torch.isfinite(torch.tensor(out["loss"])) and 0 < out["align"] < 2
    for module, old in zip((model, state.head), before):  # the network and the projection head both learned
        assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), old))

    saved = checkpoints.best_ema_checkpoint(
        ema=state.ema.state_dict(), model_info=info, epoch=1, val_robust=0.0, val_clean=0.0
    )
    checkpoints.save(tmp_path / "best-ema.pt", saved)
    loaded = checkpoints.load_classifier(tmp_path / "best-ema.pt")
    torch.testing.assert_close(loaded.model(x), state.ema.eval()(x.contiguous()))


def test_timm_students_take_constructor_options_and_unknown_names_are_one_line():
    from dra_pipeline.models import create_model

    vit = create_model("timm:test_vit?img_size=32&patch_size=4", dataset="cifar10", num_classes=10, in_channels=3)
    assert vit(torch.rand(2, 3, 32, 32)).shape == (2, 10) and vit.feature_dim == 64
    with pytest.raises(DraError) as unknown:
        create_model("timm:resnet10", dataset="cifar10", num_classes=10, in_channels=3)
    assert "timm has no architecture 'resnet10'" in str(unknown.value) and "timm:resnet10t" in str(unknown.value)
    with pytest.raises(DraError, match="key=value"):
        create_model("timm:test_vit?img_size", dataset="cifar10", num_classes=10, in_channels=3)
    with pytest.raises(DraError, match="timm:ARCH for any timm model"):
        create_model("resnet-9000", dataset="cifar10", num_classes=10, in_channels=3)
