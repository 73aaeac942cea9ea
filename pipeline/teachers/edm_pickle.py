"""Read NVlabs/edm network pickles without executing anything from them.

EDM's `torch_utils.persistence` pickles every network object as a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, `meta = dict(type='class', version, module_src,
class_name, state)`, and EDM's loader `exec`s `module_src` to rebuild the class. Here that global maps to a
function that keeps only `class_name` and `state` (the object's `__dict__`) in an inert `PickledObject`;
every other global must be on a short allowlist (tensor and storage rebuilders, a few containers, numpy
scalars), and anything else is refused before it is called.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dra_pipeline.errors import DraError

try:
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar as _np_scalar

SUPPORTED_PRECOND = "EDMPrecond"  # VP/VE/iDDPM preconditioners share the U-Net keys but not the maths


class PickledObject:
    """Inert stand-in for a pickled object: the name of its class and its state (the object's `__dict__`)."""

    class_name = "?"
    state: dict | None = None

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name, self.state = class_name, state

    def __setstate__(self, state: Any) -> None:  # BUILD after NEWOBJ or copyreg._reconstructor
        self.state = state


# torch containers are not persistent classes: they pickle by class name (NEWOBJ, or copyreg._reconstructor in
# protocols 0-1) followed by BUILD with their __dict__. Each maps to a PickledObject subclass of the same name.
_CONTAINERS = {name: type(name, (PickledObject,), {"class_name": name}) for name in ("ModuleDict", "ModuleList")}


def _persistent_object(meta: Any) -> PickledObject:
    """Stands in for `_reconstruct_persistent_obj(meta)`: keeps class_name and state, drops module_src unread."""
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)):
        raise pickle.UnpicklingError("malformed torch_utils.persistence record")
    state = meta.get("state")
    if state is not None and not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent {meta['class_name']} has a {type(state).__name__} as its state")
    return PickledObject(meta["class_name"], state or {})


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor (pickle protocols 0-1), restricted to stand-in classes and dicts."""
    if isinstance(cls, type) and issubclass(cls, PickledObject) and base is object and state is None:
        return cls.__new__(cls)
    if cls is dict and base is dict and isinstance(state, dict):  # dnnlib.util.EasyDict, mapped to dict
        return dict(state)
    raise pickle.UnpicklingError(f"copyreg._reconstructor({cls!r}, {base!r}) is not allowed")


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None) -> Tensor:
    """torch._utils._rebuild_tensor_v2 on a real storage, within its bounds; gradients and hooks are dropped."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor storage is a {type(storage).__name__}, not a torch storage")
    shaped = isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
    if not shaped or not all(isinstance(n, int) and n >= 0 for n in (offset, *size, *stride)):
        raise pickle.UnpicklingError(f"malformed tensor view: offset {offset!r}, size {size!r}, stride {stride!r}")
    # torch does not check that a view fits its storage: a crafted one would read memory beyond it.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else -1
    if last >= storage._size():  # size() would warn that TypedStorage is deprecated
        raise pickle.UnpicklingError(
            f"tensor view (offset {offset}, size {size}) exceeds its {storage._size()}-element storage"
        )
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict(), metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> Tensor:
    """torch._utils._rebuild_parameter(_with_state): the plain tensor, as a state dict holds it."""
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


def _load_storage(data: Any) -> torch.storage.TypedStorage:
    """torch.storage._load_from_bytes: the bytes are a legacy `torch.save` of one storage, read weights-only."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"storage payload is a {type(data).__name__}, not bytes")
    storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"storage payload holds a {type(storage).__name__}, not a storage")
    return storage


def _latin1(text: Any, encoding: str = "utf-8") -> bytes:
    """_codecs.encode as pickle protocols 0-2 use it for bytes: `encode(text, 'latin1')`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return codecs.encode(text, "latin1")


_GLOBALS: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _persistent_object,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage,
    "torch.device": torch.device,
    "torch.Size": torch.Size,
    **{f"torch.nn.modules.container.{name}": cls for name, cls in _CONTAINERS.items()},
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "copyreg._reconstructor": _reconstructor,
    "builtins.object": object,  # _reconstructor's base argument
    "builtins.dict": dict,
    "_codecs.encode": _latin1,
    "dnnlib.util.EasyDict": dict,
    "numpy.dtype": np.dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
}


# Protocols 0-2 name these modules as Python 2 did (pickle's fix_imports); the stock find_class renames them.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowlisted globals (and torch dtypes such as `torch.float32`); refuses the rest."""

    def __init__(self, file, where: Path):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        key = f"{module}.{name}"
        if key in _GLOBALS:
            return _GLOBALS[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise DraError(f"{self.where}: refusing to load global {key} (EDM pickles are read without executing code)")


def read_edm_pickle(path: Path) -> tuple[dict, dict[str, Tensor]]:
    """(EDMPrecond init kwargs, state dict of data['ema']) from an NVlabs/edm network pickle; runs none of its code.

    The state dict holds parameters and persistent buffers (CPU tensors) named as `EDMDenoiser(cfg).state_dict()`
    names them, e.g. `model.enc.32x32_conv.weight`, `model.enc.16x16_down.conv0.resample_filter`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f, path).load()
    except DraError:
        raise
    except OSError as e:
        raise DraError(f"{path}: cannot read ({e.strerror or e})") from e
    except Exception as e:  # a malformed or truncated stream surfaces as any of a dozen exception types
        detail = (str(e).splitlines() or [""])[0]
        raise DraError(f"{path}: not a readable EDM network pickle ({type(e).__name__}: {detail})") from e
    if not isinstance(data, dict) or "ema" not in data:
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DraError(f"{path}: not an EDM network pickle (expected a dict with key 'ema', found {found})")
    ema = data["ema"]
    if not isinstance(ema, PickledObject) or ema.class_name != SUPPORTED_PRECOND:
        found = ema.class_name if isinstance(ema, PickledObject) else type(ema).__name__
        raise DraError(f"{path}: data['ema'] is a {found}; only {SUPPORTED_PRECOND} networks are supported")
    kwargs, args = ema.state.get("_init_kwargs"), ema.state.get("_init_args")
    if not isinstance(kwargs, dict) or args:
        raise DraError(f"{path}: the {SUPPORTED_PRECOND} does not record its init arguments as keywords")
    state: dict[str, Tensor] = {}
    try:
        _collect_state(ema, "", state, path)
    except RecursionError as e:  # a crafted file can make a module its own child
        raise DraError(f"{path}: the network's module tree is cyclic or nested too deeply") from e
    return dict(kwargs), state


def _collect_state(node: PickledObject, prefix: str, out: dict[str, Tensor], where: Path) -> None:
    """Add node's parameters and persistent buffers, then its submodules', to out under `prefix`."""
    state = node.state
    if not isinstance(state, dict):
        raise DraError(f"{where}: module {prefix.rstrip('.') or 'ema'} ({node.class_name}) has no recorded state")
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in non_persistent):
                continue  # EDM registers absent buffers (e.g. resample_filter without resampling) as None
            if not isinstance(value, Tensor):
                raise DraError(f"{where}: {prefix}{name} is a {type(value).__name__}, not a tensor")
            out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PickledObject):
            raise DraError(f"{where}: submodule {prefix}{name} is a {type(child).__name__}, not a module")
        _collect_state(child, f"{prefix}{name}.", out, where)


# END
