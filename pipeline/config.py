"""Training configuration: frozen dataclasses with units, YAML presets that hold only overrides, and
`--set section.key=value` overrides that are type-checked (unknown keys are errors)."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dra_pipeline.errors import DraError

PRESETS_DIR = Path(str(importlib.resources.files("dra_pipeline.configs")))


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion-mnist"  # real training set (source text); the store's sources override it
    synthetic: tuple[str, ...] = ()  # DM-AT npz files of generated images (without a store)
    synthetic_fraction: float = 0.0  # share of each batch from synthetic rows, int(batch x share), drawn with
    # replacement; DM-AT: 0.7 (358 of 512)
    validation: int = 1024  # N real training images held out to pick the best checkpoint
    validation_rows: Literal["auto", "first", "spread"] = "auto"  # first N (DM-AT), or the same number per class
    # evenly spaced (spread: for class-sorted sources); auto: first for named datasets, spread for folders and files
    normalisation: str = "auto"  # input mean/std inside the model: auto (a named dataset's published values, else
    # computed over the training images and recorded), or a name: imagenet, cifar10, cifar100, fashion-mnist
    crop_padding: int = 4  # random crop after zero-padding by this many pixels (0: no crop)
    crop_size: int = 0  # random crop of this side from each image, center crop for validation (0: keep the size)
    flip: bool = True  # random horizontal flips
    rotation: float = 0.0  # random rotation in [-r, r] degrees, nearest pixel, zero fill (DM-AT's CIFAR-100: 15)
    epoch_images: int = 0  # images per "epoch" (0: the real training set's size; DM-AT: 50000 for CIFAR-10)
    workers: int = 1  # threads preparing batches (image decoding: raise it for JPEG folders such as ImageNet)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "small-cnn"  # a name in pipeline/models, or timm:ARCH (any timm architecture)
    checkpoint: str = ""  # timm students: a weights file, or timm:ARCH.TAG for timm's pretrained weights ("" = scratch)


@dataclass(frozen=True)
class AttackConfig:
    eps: float = 0.1  # L-inf radius, pixels in [0, 1] (Fashion-MNIST 0.1; CIFAR 8/255)
    step: float = 0.025  # PGD step size, pixels in [0, 1] (CIFAR 2/255)
    steps: int = 10  # attack iterations per training step
    val_steps: int = 40  # PGD steps for validation robust accuracy (DM-AT: PGD-40)
    val_loss: Literal["cw", "ce"] = "cw"  # validation PGD's loss: CW margin (DM-AT) or cross-entropy


@dataclass(frozen=True)
class TrainConfig:
    loss: Literal["trades", "pgd-at"] = "trades"
    beta: float = 5.0  # TRADES weight of the KL term
    label_smoothing: float = 0.1
    epochs: int = 10
    batch_size: int = 128  # global batch (all ranks together)
    optimizer: Literal["sgd", "lion"] = "sgd"  # SGD Nesterov (DM-AT) or Lion (betas 0.9, 0.99; DRA's ImageNet runs)
    lr: float = 0.1  # peak learning rate (DM-AT: 0.2 at batch 512)
    momentum: float = 0.9  # SGD Nesterov (cycled 0.95 -> 0.85 -> 0.95 instead when cycle_momentum)
    weight_decay: float = 5e-4  # not applied to normalisation-layer parameters (batch, layer, group norm)
    schedule: Literal["onecycle", "warmup-cosine"] = "onecycle"  # onecycle: PyTorch's OneCycleLR (DM-AT's
    # "cosinew": cosine warm-up from lr / 25 over `warmup`, cosine decay to lr / 25 / 1e4); warmup-cosine: linear
    # warm-up from 0, cosine to 0
    schedule_unit: Literal["epoch", "step"] = "epoch"  # the schedule advances once per epoch (DM-AT) or per step
    warmup: float = 0.025  # fraction of the schedule spent warming up (OneCycleLR's pct_start)
    cycle_momentum: bool = True  # onecycle also cycles SGD momentum between 0.95 and 0.85 (OneCycleLR's default)
    ema_decay: float = 0.995  # EMA decay cap, reached through min(decay, (1 + d) / (10 + d)) after ema_warmup
    ema_warmup: float = 0.025  # fraction of all steps during which the EMA copies the model (DM-AT)
    first_batch_bn_stats: bool = True  # batch-norm running statistics start as the first step's (DM-AT: momentum 1)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda (under torchrun: cuda:LOCAL_RANK)
    precision: Literal["fp32", "bf16"] = "fp32"  # fp32 (TF32 matmuls allowed on CUDA), as DM-AT; bf16: autocast
    # for the whole step, attack included (it changes the adversarial examples: docs/recipe.md)
    channels_last: Literal["auto", "on", "off"] = "auto"  # NHWC memory format; auto: on for CUDA, off on CPU
    compile: bool = False  # torch.compile the classifier (first steps pay the compilation)


@dataclass(frozen=True)
class DRAConfig:
    weight: float = 0.0  # lambda; 0 disables DRA (plain DM-AT / AT)
    hidden: int = 2048  # projection head width (REPA: 2048; xavier-uniform weights, zero biases)
    weight_decay: float = 0.0  # on the projection head (REPA: none)
    extra_sigma: Literal["add", "replace"] = "add"  # a store's extra-sigma view: a second target (mean of the two
    # cosine terms, the paper's "additional representation") or the only one
    online_teacher: bool = False  # compute targets with the teacher each step (benchmarks, ablations)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dra: DRAConfig = field(default_factory=DRAConfig)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return apply_overrides(cls(), flatten(d))


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> one level with dotted keys: {"train": {"lr": 0.1}} -> {"train.lr": 0.1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _coerce(value, hint, key: str):
    """Check/convert a YAML or command-line value to the field's type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise DraError(f"{key} must be one of {typing.get_args(hint)}, not {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return tuple(str(v).strip() for v in items if str(v).strip())
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise DraError(f"{key} must be true or false, not {value!r}")
    try:
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            return fraction(value)
        return str(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise DraError(f"{key} must be {hint.__name__}, not {value!r}") from None


def fraction(value) -> float:
    """A number, or a fraction written a/b for pixel budgets ('8/255'); ValueError (or ZeroDivisionError) if not."""
    if isinstance(value, str) and "/" in value:
        num, den = value.split("/", 1)
        return float(num) / float(den)
    return float(value)


def apply_overrides(cfg: Config, overrides: dict[str, object]) -> Config:
    """Return cfg with `section.key` values replaced; unknown keys and ill-typed values raise DraError."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise DraError(f"unknown config key {key!r} (sections: {', '.join(sections)})")
        hints = typing.get_type_hints(type(sections[section]))
        if name not in hints:
            raise DraError(f"unknown config key {key!r} (in {section}: {', '.join(hints)})")
        sections[section] = dataclasses.replace(sections[section], **{name: _coerce(value, hints[name], key)})
    return Config(**sections)


def parse_sets(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DraError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_config(preset: str | None, sets: tuple[str, ...] = ()) -> Config:
    """Defaults <- preset (configs/NAME.yaml or a YAML file path; `base: NAME` inherits) <- --set overrides."""
    cfg = apply_overrides(Config(), _preset_overrides(preset)) if preset else Config()
    return validate(apply_overrides(cfg, parse_sets(sets)))


def preset_names() -> list[str]:
    """The presets in configs/, sorted by name."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _preset_overrides(preset: str, seen: tuple[str, ...] = ()) -> dict[str, object]:
    """A preset's overrides, after those of the preset it names in `base:` (if any)."""
    import yaml

    path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise DraError(f"config {preset!r} not found ({path}); presets: {', '.join(preset_names())}")
    if str(path) in seen:
        raise DraError(f"config {path} includes itself through `base:`")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DraError(f"config {path}: not valid YAML{where} ({getattr(e, 'problem', None) or e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DraError(f"config {path}: cannot be read ({e})") from None
    if not isinstance(raw, dict):
        raise DraError(f"config {path}: must be a mapping of sections (data:, train:, ...), not a {type(raw).__name__}")
    base = raw.pop("base", None)
    inherited = _preset_overrides(base, (*seen, str(path))) if base else {}
    return {**inherited, **flatten(raw)}


# Field checks: (section.key, test, what the value must be). A failed test is one DraError line naming the field.
_CHECKS: tuple[tuple[str, typing.Callable[[float], bool], str], ...] = (
    ("data.synthetic_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("data.validation", lambda v: v >= 1, "at least 1"),
    ("data.crop_padding", lambda v: v >= 0, "at least 0"),
    ("data.crop_size", lambda v: v >= 0, "at least 0"),
    ("data.epoch_images", lambda v: v >= 0, "at least 0 (0: the real training set's size)"),
    ("data.workers", lambda v: v >= 1, "at least 1"),
    ("attack.eps", lambda v: 0 <= v < math.inf, "a finite radius >= 0"),
    ("attack.step", lambda v: 0 <= v < math.inf, "a finite step >= 0"),
    ("attack.steps", lambda v: v >= 0, "at least 0"),
    ("attack.val_steps", lambda v: v >= 0, "at least 0"),
    ("train.beta", lambda v: 0 <= v < math.inf, "finite and >= 0"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.epochs", lambda v: v >= 1, "at least 1"),
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("train.momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train.weight_decay", lambda v: 0 <= v < math.inf, "finite and >= 0"),
    ("train.warmup", lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
    ("train.ema_decay", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train.seed", lambda v: v >= 0, "at least 0"),
    ("dra.weight", lambda v: 0 <= v < math.inf, "finite and >= 0 (lambda)"),
    ("dra.hidden", lambda v: v >= 1, "at least 1"),
)


def validate(cfg: Config) -> Config:
    """Return cfg when every checked field holds a usable value (NaN fails every test), else raise DraError."""
    for key, ok, want in _CHECKS:
        section, _, name = key.partition(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise DraError(f"{key} must be {want}, not {value!r}")
    return cfg
