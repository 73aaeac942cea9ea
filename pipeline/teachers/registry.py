"""Teacher registry: `@register_teacher(spec)` on a builder; `create_teacher(name, ...)` is the one constructor."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path

from dra_pipeline.errors import DraError
from dra_pipeline.teachers.base import Teacher, TeacherSpec

_REGISTRY: dict[str, tuple[TeacherSpec, Callable[..., Teacher]]] = {}


def register_teacher(spec: TeacherSpec):
    """Decorator: builder(spec, checkpoint: Path | None, layer, noise, seed) -> Teacher."""

    def wrap(builder):
        if spec.name in _REGISTRY:
            raise ValueError(f"teacher {spec.name!r} registered twice")
        _REGISTRY[spec.name] = (spec, builder)
        return builder

    return wrap


def teacher_spec(name: str) -> TeacherSpec:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise DraError(f"unknown teacher {name!r}{hint}")
    return _REGISTRY[name][0]


def list_teachers() -> list[TeacherSpec]:
    return [spec for spec, _ in _REGISTRY.values()]


def create_teacher(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    layer: str | None = None,
    noise: float | None = None,
    seed: int = 0,
    zero_channels: Sequence[int] = (),
    device: str = "cpu",
) -> Teacher:
    """Build a registered teacher in eval mode with frozen weights, on `device`."""
    spec = teacher_spec(name)
    teacher = _REGISTRY[name][1](
        spec, checkpoint=Path(checkpoint) if checkpoint else None, layer=layer, noise=noise, seed=seed
    )
    if teacher.layer not in teacher.feature_modules():
        raise DraError(f"{name} has no layer {teacher.layer!r}; choose from {', '.join(teacher.feature_modules())}")
    teacher.checkpoint_path = str(checkpoint or spec.checkpoint or "")
    teacher.set_zero_channels(zero_channels)
    teacher.requires_grad_(False)
    return teacher.eval().to(device)


def teacher_from_provenance(prov: dict, *, device: str = "cpu", where: str = "the store") -> Teacher:
    """The teacher a feature store was extracted with (its provenance: name, checkpoint, layer, noise, seed, zeroed
    channels), refused when its weights differ from the checkpoint hash the store recorded."""
    if "teacher" not in prov or "layer" not in prov:
        raise DraError(f"{where} records no teacher provenance")
    checkpoint = prov.get("checkpoint") or None
    if checkpoint == teacher_spec(prov["teacher"]).checkpoint:
        checkpoint = None  # the default weights (a URL or hub id): fetched into this machine's cache if absent
    teacher = create_teacher(
        prov["teacher"],
        checkpoint=checkpoint,
        layer=prov["layer"],
        noise=prov.get("noise"),
        seed=prov.get("seed", 0),
        zero_channels=prov.get("zeroed_channels", ()),
        device=device,
    )
    want = prov.get("checkpoint_sha256")
    if want and teacher.checkpoint_sha256 != want:
        raise DraError(
            f"the teacher's weights ({teacher.checkpoint_path or 'packaged'}) differ from those {where} was made "
            f"with (sha256 {want[:12]}...)"
        )
    return teacher
