"""timm students: ViT-B/2 for 32 x 32 inputs, ConvNeXt-B and ViT-B/16 by registry name, and any timm architecture as
`model.name: timm:ARCH` (constructor arguments as `timm:ARCH?img_size=32&patch_size=4`); from scratch, from a local
checkpoint file, or with timm's pretrained weights by name (`timm:convnext_base.fb_in1k`, fetched from the hub into
its cache). The DRA feature is the pre-logits representation: forward_features, then the model's own pooling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.fetch import hub_file
from dra_pipeline.models.base import Classifier

PRETRAINED = "timm:"  # a checkpoint naming timm's pretrained weights: timm:ARCH[.TAG]
STUDENT = "timm:"  # a model name naming any timm architecture: timm:ARCH[?key=value&...]


class TimmClassifier(Classifier):
    """A timm backbone: features = its pre-logits representation, head = its classifier."""

    def __init__(self, backbone: nn.Module, *, mean: Sequence[float], std: Sequence[float]):
        super().__init__(mean, std)
        self.backbone = backbone
        self.feature_dim = backbone.num_features
        self.head = backbone.get_classifier()

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(self.normalise(x)), pre_logits=True)


def parse_student(name: str) -> tuple[str, dict]:
    """`timm:ARCH[?key=value&...]` -> (ARCH, constructor arguments; numbers and true/false converted), checking
    that timm knows ARCH (one DraError line with close names otherwise)."""
    import difflib

    import timm

    arch, _, query = name.removeprefix(STUDENT).partition("?")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(STUDENT + c for c in close)}?" if close else " (see timm.list_models())"
        raise DraError(f"model {name!r}: timm has no architecture {arch!r}{hint}")
    kw = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not (key and eq):
            raise DraError(f"model {name!r}: options are key=value pairs joined by &, not {item!r}")
        kw[key] = _literal(value)
    return arch, kw


def _literal(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_timm(
    name: str, *, num_classes: int, in_channels: int, checkpoint: str | Path | None = None, **kw
) -> nn.Module:
    """timm.create_model; weights (backbone only, head re-initialised) from a local file, or `timm:ARCH[.TAG]` for
    timm's own pretrained weights of that name (see `pretrained_timm`)."""
    import timm

    if checkpoint is not None and str(checkpoint).startswith(PRETRAINED):
        tagged = str(checkpoint).removeprefix(PRETRAINED)
        return pretrained_timm(name, tagged, num_classes=num_classes, in_channels=in_channels, **kw)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kw)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not Path(checkpoint).is_file():
            raise DraError(f"{name}: checkpoint {checkpoint} not found")
        state = _to_timm_layout(model, _read_state(Path(checkpoint)))
        head = {k for k in model.state_dict() if k.startswith(_head_prefix(model))}
        state = {k: v for k, v in state.items() if k not in head}
        own = model.state_dict()
        missing = [k for k in own if k not in state and k not in head]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            k = wrong[0]
            raise DraError(
                f"{checkpoint}: does not match {name}: {k} has shape {tuple(state[k].shape)}, "
                f"the model expects {tuple(own[k].shape)} ({len(wrong)} such tensors)"
            )
        if missing or unexpected:
            raise DraError(
                f"{checkpoint}: does not match {name} ({len(missing)} missing keys, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
            )
        model.load_state_dict(state, strict=False)
    return model


def pretrained_timm(arch: str, tagged: str, *, num_classes: int, in_channels: int, **kw) -> nn.Module:
    """timm's pretrained model `tagged` (ARCH or ARCH.TAG, ARCH the student's timm architecture) built with
    `pretrained=True`: its weight file comes from its Hugging Face repo through the hub cache (huggingface_hub
    downloads it, or reads only the cache when offline), then timm's own loader adapts it (new head, channels,
    patch and position embeddings resized)."""
    import timm
    from timm.models import get_pretrained_cfg

    known = timm.list_pretrained(f"{arch}.*")
    cfg = get_pretrained_cfg(tagged) if tagged.partition(".")[0] == arch else None
    if cfg is None or not cfg.hf_hub_id:
        choose = f"choose from {', '.join(known)}" if known else "timm publishes none for it"
        raise DraError(f"timm:{tagged}: not pretrained weights of {arch} on the hub; {choose}")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
    path = hub_file(cfg.hf_hub_id, *files, instead="or pass the weights file as model.checkpoint")
    return timm.create_model(
        tagged,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path)},
        num_classes=num_classes,
        in_chans=in_channels,
        **kw,
    )


def _to_timm_layout(model: nn.Module, state: dict) -> dict:
    """A checkpoint in its authors' key layout (e.g. Meta's DINOv3 release) converted by the timm model family's
    own `checkpoint_filter_fn`, when the keys are not already timm's."""
    import sys

    if set(state) & set(model.state_dict()):
        return state
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    return convert(state, model) if convert is not None else state


def _head_prefix(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if m is model.get_classifier()]
    return names[0] + "." if names else "head."


def _read_state(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state
