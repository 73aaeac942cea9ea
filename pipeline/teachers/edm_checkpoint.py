"""EDM denoiser checkpoints: NVlabs/edm network pickles (read by `edm_pickle` without executing anything from them)
and this project's safetensors files, whose metadata holds the SongUNet config (written by `teacher convert` and
`teacher fit`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dra_pipeline.atomic import atomic_write
from dra_pipeline.errors import DraError
from dra_pipeline.hashing import file_sha256
from dra_pipeline.teachers.edm_pickle import read_edm_pickle
from dra_pipeline.teachers.loading import load_strict
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

SAFETENSORS_FORMAT = "dra-songunet-edm"


def config_from_edm_kwargs(kwargs: dict, where: Path) -> SongUNetConfig:
    """Map EDMPrecond's recorded init kwargs onto our config; refuse settings we do not implement."""
    required = {
        "model_type": "SongUNet",
        "embedding_type": "positional",
        "encoder_type": "standard",
        "decoder_type": "standard",
        "channel_mult_noise": 1,
    }
    for key, want in required.items():
        if key in kwargs and kwargs[key] != want:
            raise DraError(f"{where}: unsupported EDM network {key}={kwargs[key]!r} (this tool implements {want!r})")
    if list(kwargs.get("resample_filter", [1, 1])) != [1, 1]:
        raise DraError(f"{where}: unsupported resample_filter {kwargs['resample_filter']!r} (implemented: [1, 1])")
    fields = {f.name for f in dataclasses.fields(SongUNetConfig)}
    return SongUNetConfig.from_dict({k: v for k, v in kwargs.items() if k in fields})


def load_denoiser(path: Path) -> EDMDenoiser:
    """An EDMDenoiser from an EDM .pkl or our .safetensors, loaded with strict key and shape checks."""
    if not path.is_file():
        raise DraError(f"checkpoint {path} not found")
    if path.suffix == ".pkl":
        kwargs, state = read_edm_pickle(path)
        cfg = config_from_edm_kwargs(kwargs, path)
    elif path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != SAFETENSORS_FORMAT:
            raise DraError(
                f"{path}: not a {SAFETENSORS_FORMAT} safetensors file (metadata format={meta.get('format')!r})"
            )
        cfg = SongUNetConfig.from_dict(json.loads(meta["config"]))
        state = load_file(str(path))
    else:
        raise DraError(f"{path}: expected an EDM .pkl or a .safetensors checkpoint")
    denoiser = EDMDenoiser(cfg)
    load_strict(denoiser, state, path)
    return denoiser


def save_denoiser(denoiser: EDMDenoiser, path: Path, extra: dict | None = None) -> None:
    """Write weights + config (metadata) by temp file and rename."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in denoiser.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, "config": json.dumps(denoiser.cfg.to_dict()), **(extra or {})}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()}))


def convert_pickle_to_safetensors(pkl: Path, out: Path) -> None:
    """Write the EMA network of EDM pickle `pkl` to `out` (.safetensors, config in its metadata); never overwrites."""
    pkl, out = Path(pkl), Path(out)
    if out.suffix != ".safetensors":
        raise DraError(f"{out}: the converted checkpoint must be named *.safetensors")
    if out.exists():
        raise DraError(f"{out} already exists; not overwriting it")
    kwargs, state = read_edm_pickle(pkl)
    denoiser = EDMDenoiser(config_from_edm_kwargs(kwargs, pkl))
    load_strict(denoiser, state, pkl)
    save_denoiser(denoiser, out, extra={"source": pkl.name, "source_sha256": file_sha256(pkl)})
