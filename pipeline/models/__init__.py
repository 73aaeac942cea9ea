"""Classifier registry: `create_model(name, ...)` is the one constructor; every model exposes `features`.

The registry names DM-AT's exact WideResNets and a few more; `timm:ARCH` (optionally `timm:ARCH?img_size=32&...`)
builds any timm architecture as a student, its DRA feature taken before its classifier (timm_models.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dra_pipeline.errors import DraError
from dra_pipeline.models.base import Classifier

# Published input normalisations applied inside the model (mean, std per channel, pixels in [0, 1]), by name. A
# run records the one it used in its model_info ("normalisation": name, mean, std), so evaluate and analyze
# rebuild the same model; other datasets get theirs computed from their training images (`choose_normalisation`).
NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _wrn(depth: int, width: int):
    def build(**kw):
        from dra_pipeline.models.wideresnet import WideResNet

        return WideResNet(depth=depth, width=width, **kw)

    return build


def _preact(**kw):
    from dra_pipeline.models.preact_resnet import PreActResNet18

    return PreActResNet18(**kw)


def _small(batch_norm: bool = True, width: int = 32):
    def build(**kw):
        from dra_pipeline.models.small import SmallCNN

        return SmallCNN(batch_norm=batch_norm, width=width, **kw)

    return build


def _timm(name: str, **timm_kw):
    def build(*, num_classes, in_channels, mean, std, checkpoint=None):
        from dra_pipeline.models.timm_models import TimmClassifier, build_timm

        backbone = build_timm(name, num_classes=num_classes, in_channels=in_channels, checkpoint=checkpoint, **timm_kw)
        return TimmClassifier(backbone, mean=mean, std=std)

    return build


MODELS: dict[str, Callable[..., Classifier]] = {
    "wrn-28-10": _wrn(28, 10),  # DM-AT's CIFAR model, 36.5 M parameters, 640-d features
    "wrn-34-10": _wrn(34, 10),
    "wrn-70-16": _wrn(70, 16),
    "wrn-16-4": _wrn(16, 4),
    "preact-resnet-18": _preact,
    "small-cnn": _small(),  # TRADES' MNIST network: 32-64 channels, 0.31 M parameters
    "small-cnn-16": _small(width=16),  # half the channels, 0.16 M parameters, ~3x faster on CPU (fmnist-cpu preset)
    "small-cnn-nobn": _small(batch_norm=False),  # the same without batch norm (batch-split invariant)
    "vit-b-2": _timm("vit_base_patch16_224", img_size=32, patch_size=2),  # ViT-B with 2x2 patches on 32x32
    "convnext-b": _timm("convnext_base"),  # DINOv3's ConvNeXt-B is this architecture
    "vit-b-16": _timm("vit_base_patch16_224"),
    "vit-b-16-dinov3": _timm("vit_base_patch16_dinov3"),  # DINOv3's ViT-B/16: RoPE, 4 registers, LayerScale
}
ACCEPTS_CHECKPOINT = {"vit-b-2", "convnext-b", "vit-b-16", "vit-b-16-dinov3"}


def choose_normalisation(choice: str, dataset: str) -> dict | None:
    """The normalisation record {"name", "mean", "std"} that `choice` names: "auto" is the dataset's published one
    when it has one (cifar10, cifar100, fashion-mnist), else None: compute it from the training images and record
    it as {"name": "computed", ...}. Any other choice is a name in NORMALISATION (e.g. "imagenet")."""
    name = dataset if choice == "auto" else choice
    if name in NORMALISATION:
        mean, std = NORMALISATION[name]
        return {"name": name, "mean": list(mean), "std": list(std)}
    if choice == "auto":
        return None
    raise DraError(f"data.normalisation must be auto or one of {', '.join(NORMALISATION)}, not {choice!r}")


def create_model(
    name: str,
    *,
    dataset: str,
    num_classes: int,
    in_channels: int,
    normalisation: dict | None = None,
    checkpoint: str | Path | None = None,
) -> Classifier:
    """Build a registered classifier, or timm's architecture for `timm:ARCH`, with an input normalisation inside
    it: `normalisation` ({"mean", "std"} per channel, pixels in [0, 1], as a run's model_info records it), else the
    dataset's published one."""
    timm_student = name.startswith("timm:")
    if timm_student:
        from dra_pipeline.models.timm_models import parse_student

        arch, timm_kw = parse_student(name)
    elif name not in MODELS:
        raise DraError(f"unknown model {name!r}; choose from {', '.join(MODELS)}, or timm:ARCH for any timm model")
    if normalisation is not None:
        mean, std = tuple(normalisation["mean"]), tuple(normalisation["std"])
    elif dataset in NORMALISATION:
        mean, std = NORMALISATION[dataset]
    else:
        raise DraError(f"no input normalisation known for dataset {dataset!r} ({', '.join(NORMALISATION)})")
    if len(mean) != in_channels or len(std) != in_channels:
        what = (normalisation or {}).get("name", dataset)
        raise DraError(f"the {what} normalisation has {len(mean)} channels but the images have {in_channels}")
    kw = dict(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
    if checkpoint is not None:
        if name not in ACCEPTS_CHECKPOINT and not timm_student:
            accepted = ", ".join(sorted(ACCEPTS_CHECKPOINT))
            raise DraError(f"{name} trains from scratch; --checkpoint is for {accepted} and timm:ARCH students")
        kw["checkpoint"] = checkpoint  # a weights file, or timm:NAME for timm's pretrained weights
    return _timm(arch, **timm_kw)(**kw) if timm_student else MODELS[name](**kw)


__all__ = ["MODELS", "NORMALISATION", "Classifier", "choose_normalisation", "create_model"]
