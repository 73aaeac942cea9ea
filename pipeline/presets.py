"""The recipe a feature store implies: `train --features STORE` without --config trains the preset for the dataset
of the store's real rows, with or without its synthetic rows, with DRA on.

  real rows            synthetic rows   preset
  cifar10              yes              dmat-cifar10-1m-wrn28-10-dra    DM-AT 1M, WRN-28-10
  cifar10              no               at-cifar10-wrn34-10-dra         the paper's AT row, WRN-34-10
  cifar100             yes / no         dmat-cifar100-1m-wrn28-10-dra / at-cifar100-wrn34-10-dra
  fashion-mnist        either           fmnist-cpu (synthetic rows at DM-AT's 70 % per batch when present)
  image folder         either           imagenet-convnext-b-dra (folders are read in the ImageNet layout), its
                                        data.dataset set to the store's folder; a folder of images smaller than
                                        the preset's crop is refused (pass --config)

The teacher's feature width does not enter the choice: the DRA head is built for whatever width the store holds.
"""

from __future__ import annotations

import os
from typing import NamedTuple
from urllib.parse import urlencode

from dra_pipeline.cache import FeatureStore
from dra_pipeline.config import Config, load_config, preset_names
from dra_pipeline.errors import DraError

DRA_LAMBDA = 0.5  # DRA weight of a recipe the store chooses (REPA's; the paper does not publish its lambda)
DMAT_FRACTION = 0.7  # DM-AT's share of synthetic images per batch, for presets that do not set one

# (kind of the store's first source, whether it has synthetic rows) -> preset
PRESETS = {
    ("cifar10", True): "dmat-cifar10-1m-wrn28-10-dra",
    ("cifar10", False): "at-cifar10-wrn34-10-dra",
    ("cifar100", True): "dmat-cifar100-1m-wrn28-10-dra",
    ("cifar100", False): "at-cifar100-wrn34-10-dra",
    ("fashion-mnist", True): "fmnist-cpu",
    ("fashion-mnist", False): "fmnist-cpu",
    ("folder", True): "imagenet-convnext-b-dra",
    ("folder", False): "imagenet-convnext-b-dra",
}


class Choice(NamedTuple):
    preset: str  # a name in configs/
    reason: str  # what in the store led to it
    sets: tuple[str, ...]  # overrides that come with the choice, before the user's own


def preset_for_store(store: FeatureStore | str | os.PathLike) -> Choice:
    """The preset for what `store` (a FeatureStore or its path) holds; a store of another dataset is refused."""
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    real, synthetic = store.sources[0], store.sources[1:]
    has_synthetic = bool(synthetic) and sum(int(s["count"]) for s in synthetic) > 0
    kind = real["kind"]
    if (kind, has_synthetic) not in PRESETS:
        raise DraError(
            f"{store.path}: no preset for a store of {kind} images ({real['path']}); pass --config, one of "
            f"{', '.join(preset_names())}"
        )
    preset = PRESETS[kind, has_synthetic]
    sets = [f"dra.weight={DRA_LAMBDA}"]
    if kind == "folder":
        sets.append(f"data.dataset={folder_dataset(store, real, preset)}")
    if has_synthetic and load_config(preset).data.synthetic_fraction == 0:
        sets.append(f"data.synthetic_fraction={DMAT_FRACTION}")
    rows = f"{int(real['count']):,} {kind} {real.get('split', 'all')} rows"
    rows += f" + {sum(int(s['count']) for s in synthetic):,} synthetic" if has_synthetic else ", no synthetic rows"
    teacher = store.provenance.get("teacher", "unknown teacher")
    return Choice(preset, f"{store.path} holds {rows} ({teacher} features, {store.layout.dim}-d)", tuple(sets))


def folder_dataset(store: FeatureStore, real: dict, preset: str) -> str:
    """data.dataset naming the store's image folder (with its read options), once its images are at least as large
    as the crops `preset` trains on; smaller images are refused with the presets to choose from."""
    shape = real.get("image_shape")
    crop = load_config(preset).data.crop_size
    if shape and min(shape[:2]) < crop:
        raise DraError(
            f"{store.path}: its folder holds {shape[0]}x{shape[1]} images, smaller than the {crop}-px crops of the "
            f"folder preset {preset}; pass --config, one of {', '.join(preset_names())}"
        )
    options = f"?{urlencode(real['options'])}" if real.get("options") else ""
    return f"folder:{real['path']}{options}"


def recipe_config(store: FeatureStore | str | os.PathLike, sets: tuple[str, ...] = ()) -> tuple[Config, str, str]:
    """(config, preset, one line saying which preset and why) for `train --features STORE` without --config: the
    store's preset with DRA on at DRA_LAMBDA, then the user's `sets` (--lambda 0 among them gives the baseline)."""
    choice = preset_for_store(store)
    cfg = load_config(choice.preset, (*choice.sets, *sets))
    dra = f"DRA lambda {cfg.dra.weight:g}" if cfg.dra.weight > 0 else "DRA off (lambda 0: the baseline)"
    line = f"preset {choice.preset}: {choice.reason}; {dra}; --config NAME trains another preset"
    return cfg, choice.preset, line
