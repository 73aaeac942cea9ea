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
