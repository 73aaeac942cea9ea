"""Write network pickles in NVlabs/edm's `torch_utils.persistence` format from our EDMDenoiser (tests only).

No EDM code is used. Every nn.Module (and every `PersistentStub`) pickles as the global call
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, meta = dict(type='class', version, module_src,
class_name, state), with `state` the object's `__dict__` as EDM records it; nn.ModuleDict takes the ordinary
copyreg path under its real torch name; tensors pickle as plain pickle writes them (storages as legacy
`torch.save` bytes through `torch.storage._load_from_bytes`), as they do in EDM's files.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dra_pipeline.teachers.songunet import Conv2d, EDMDenoiser, GroupNorm, Linear, SongUNet, SongUNetConfig, UNetBlock

PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in EDM's release
DUMMY_SRC = "# module source: a real EDM pickle embeds networks.py here, and EDM's loader exec()s it\n"
EDM_CLASS_NAMES = {  # EDMDenoiser takes the `precond` name given to write_edm_pickle, normally "EDMPrecond"
    SongUNet: "SongUNet",
    UNetBlock: "UNetBlock",
    Conv2d: "Conv2d",
    GroupNorm: "GroupNorm",
    Linear: "Linear",
}
# EDM's SongUNet / EDMPrecond defaults: train.py records these kwargs only when it sets them.
EDM_DEFAULTS = dict(num_blocks=4, attn_resolutions=[16], channel_mult_emb=4, sigma_data=0.5)


def _reconstruct_persistent_obj(meta):
    raise AssertionError("only pickled by reference, never called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Pickles as `dnnlib.util.EasyDict`, like the dicts EDM's code builds."""

    __module__ = "dnnlib.util"


class PositionalEmbedding(nn.Module):
    """EDM's parameter-free `map_noise` module: present in its files, absent from our SongUNet."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, 10000, True


@dataclass
class PersistentStub:
    """A non-module persistent object (EDMLoss, AugmentPipe) given by its class name and state."""

    class_name: str
    state: dict


def edm_init_kwargs(cfg: SongUNetConfig) -> dict:
    """EDMPrecond's `_init_kwargs` as EDM's train.py records them for a DDPM++ (`--arch=ddpmpp`) network."""
    kwargs = dict(
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        label_dim=cfg.label_dim,
        model_type="SongUNet",
        embedding_type="positional",
        encoder_type="standard",
        decoder_type="standard",
        channel_mult_noise=1,
        resample_filter=[1, 1],
        model_channels=cfg.model_channels,
        channel_mult=list(cfg.channel_mult),
        augment_dim=cfg.augment_dim,
        dropout=cfg.dropout,
        use_fp16=False,
    )
    ours = dict(
        num_blocks=cfg.num_blocks,
        attn_resolutions=list(cfg.attn_resolutions),
        channel_mult_emb=cfg.channel_mult_emb,
        sigma_data=cfg.sigma_data,
    )
    return {**kwargs, **{k: v for k, v in ours.items() if v != EDM_DEFAULTS[k]}}


def _module_state(module: nn.Module) -> dict:
    """The module's __dict__ as EDM's classes hold it: OrderedDict registries, no `cfg`/`precond` attributes."""
    state = module.__getstate__()
    for key in ("_parameters", "_buffers", "_modules"):
        state[key] = collections.OrderedDict(state[key])
    state.pop("cfg", None)
    state.pop("precond", None)
    if isinstance(module, Conv2d) and "resample_filter" not in state["_buffers"]:
        del state["resample_filter"]  # EDM registers the absent filter as a None buffer
        state["_buffers"]["resample_filter"] = None
    if isinstance(module, SongUNet):
        state["_modules"] = collections.OrderedDict(
            [("map_noise", PositionalEmbedding(module.noise_channels)), *state["_modules"].items()]
        )
    if isinstance(module, EDMDenoiser):
        cfg = module.cfg
        state.update(
            img_resolution=cfg.img_resolution,
            img_channels=cfg.img_channels,
            label_dim=cfg.label_dim,
            use_fp16=False,
            sigma_min=0,
            sigma_max=float("inf"),
            sigma_data=cfg.sigma_data,
            _init_args=(),
            _init_kwargs=edm_init_kwargs(cfg),
        )
    return state


class _EDMPickler(pickle.Pickler):
    def __init__(self, file, protocol: int, module_src: str, precond: str):
        super().__init__(file, protocol=protocol)
        self.module_src, self.precond = module_src, precond

    def reducer_override(self, obj):
        if isinstance(obj, PersistentStub):
            return _reconstruct_persistent_obj, (self._meta(obj.class_name, obj.state),)
        if isinstance(obj, nn.Module) and not isinstance(obj, nn.ModuleDict):
            name = self.precond if isinstance(obj, EDMDenoiser) else EDM_CLASS_NAMES.get(type(obj), type(obj).__name__)
            return _reconstruct_persistent_obj, (self._meta(name, _module_state(obj)),)
        return NotImplemented

    def _meta(self, class_name: str, state: dict) -> dict:
        return dict(
            type="class", version=PERSISTENCE_VERSION, module_src=self.module_src, class_name=class_name, state=state
        )


@contextlib.contextmanager
def _fake_edm_modules():
    """Make `torch_utils.persistence` and `dnnlib.util` importable by name while pickling, then remove them."""
    names = {"torch_utils.persistence": _reconstruct_persistent_obj, "dnnlib.util": EasyDict}
    saved = {k: sys.modules.get(k) for n in names for k in (n.split(".")[0], n)}
    try:
        for dotted, obj in names.items():
            parent, child = dotted.split(".")
            sys.modules[parent] = types.ModuleType(parent)
            sys.modules[dotted] = module = types.ModuleType(dotted)
            setattr(sys.modules[parent], child, module)
            setattr(module, obj.__qualname__, obj)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def default_extras() -> dict:
    """The other entries of an EDM training snapshot, with plausible contents."""
    return dict(
        loss_fn=PersistentStub("EDMLoss", dict(P_mean=-1.2, P_std=1.2, sigma_data=0.5)),
        augment_pipe=PersistentStub("AugmentPipe", dict(p=0.12, xflip=1e8, yflip=1.0, scale=1.0, aniso=1.0)),
        dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="cifar10-32x32.zip", xflip=False),
    )


def write_edm_pickle(
    path: Path,
    denoiser: EDMDenoiser,
    *,
    protocol: int = 4,
    module_src: str = DUMMY_SRC,
    precond: str = "EDMPrecond",
    extra: dict | None = None,
) -> None:
    """Pickle {'ema': denoiser, **extra} (extra defaults to `default_extras()`) in EDM's persistence format."""
    data = {"ema": denoiser, **(default_extras() if extra is None else extra)}
    with _fake_edm_modules(), open(path, "wb") as f:
        _EDMPickler(f, protocol, module_src, precond).dump(data)
