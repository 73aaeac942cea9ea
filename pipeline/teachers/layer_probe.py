"""Linear probes of teacher features over a grid of layers x noise levels, with a raw-pixel baseline.

Each batch is encoded and noised once per noise level, and one forward pass per level captures every requested
layer (hooks on all of them; the pass stops once the last has run). A row's noise comes from the teacher's
(seed, row) generator exactly as in `Teacher.layer_activations`, so with `teacher_labels="true"` probe features
equal what `extract` stores for the same row, layer and level. Train and test images are rows of one index
space (train source first), so no two images share a noise draw.

A class-conditional teacher told each image's true label writes that label into every layer (the embedding
shifts each block's channels per class), so a probe of such features reads the label back at ~100 %, whatever
the layer or noise level. `teacher_labels="fixed"` tells every image class 0 instead: the shift is then the same
for all images and the probe measures what the features say about the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.errors import DraError
from dra_pipeline.linear_probe import linear_probe
from dra_pipeline.teachers.base import Teacher, TeacherLabels, told_labels


@dataclass(frozen=True)
class ProbeTable:
    """Test accuracy of a linear probe per (layer, noise level), and the same probe on raw pixels."""

    layers: tuple[str, ...]
    noises: tuple[float, ...]  # in the teacher's noise units (sigma, or DDPM timestep)
    accuracy: np.ndarray  # (len(layers), len(noises)) test accuracy in [0, 1]
    pixels: float  # test accuracy of the probe on flattened pixels in [0, 1]
    n_train: int
    n_test: int
    teacher_labels: TeacherLabels

    def markdown(self, noise_kind: str = "sigma") -> str:
        """The table as markdown: one row per layer, one column per noise level, accuracy in %."""
        head = "| layer | " + " | ".join(f"{noise_kind}={s:g}" for s in self.noises) + " |"
        rule = "|---|" + "---:|" * len(self.noises)
        rows = [
            f"| {layer} | " + " | ".join(f"{100 * a:.2f}" for a in acc) + " |"
            for layer, acc in zip(self.layers, self.accuracy)
        ]
        pixels = f"| raw pixels | {100 * self.pixels:.2f} |" + " |" * (len(self.noises) - 1)
        return "\n".join([head, rule, *rows, pixels])


def probe(
    teacher: Teacher,
    images: IndexedImages,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    layers: Sequence[str],
    noises: Sequence[float],
    batch_size: int,
    teacher_labels: TeacherLabels,
    progress: Callable[[int], None] | None = None,
) -> ProbeTable:
    """Probe accuracy on `test_rows` after fitting on `train_rows` (rows of `images`), per layer and noise level.

    `progress` is called with the number of images whose features were just computed.
    """
    features = {}
    for name, rows in (("train", train_rows), ("test", test_rows)):
        features[name] = grid_features(
            teacher,
            images,
            rows,
            layers=layers,
            noises=noises,
            batch_size=batch_size,
            teacher_labels=teacher_labels,
            progress=progress,
        )
    y_train, y_test = (torch.as_tensor(images.labels[r]) for r in (train_rows, test_rows))

    def score(key):
        return linear_probe(features["train"][key], y_train, features["test"][key], y_test)

    accuracy = np.array([[score((layer, noise)) for noise in noises] for layer in layers])
    pixels = [torch.as_tensor(images.read(r)[0]).flatten(1).double() / 255 for r in (train_rows, test_rows)]
    return ProbeTable(
        layers=tuple(layers),
        noises=tuple(float(s) for s in noises),
        accuracy=accuracy,
        pixels=linear_probe(pixels[0], y_train, pixels[1], y_test),
        n_train=len(train_rows),
        n_test=len(test_rows),
        teacher_labels=teacher_labels,
    )


def grid_features(
    teacher: Teacher,
    images: IndexedImages,
    rows: np.ndarray,
    *,
    layers: Sequence[str],
    noises: Sequence[float],
    batch_size: int,
    teacher_labels: TeacherLabels = "true",
    progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, float], Tensor]:
    """Pooled features {(layer, noise): float32 (len(rows), C_layer)} for the "clean" view, on the CPU."""
    told_labels(np.zeros(0), teacher_labels)  # refuses anything but true / fixed before any work
    chunks: dict[tuple[str, float], list[Tensor]] = {k: [] for k in _keys(layers, noises)}
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        pixels, labels = images.read(batch)
        told = told_labels(labels, teacher_labels)
        for key, value in pooled_at_levels(teacher, pixels, told, batch, layers=layers, noises=noises).items():
            chunks[key].append(value.cpu())
        if progress:
            progress(len(batch))
    return {k: torch.cat(v) for k, v in chunks.items()}


@torch.no_grad()
def pooled_at_levels(
    teacher: Teacher, images, labels, rows, *, layers: Sequence[str], noises: Sequence[float]
) -> dict[tuple[str, float], Tensor]:
    """images uint8 (N, H, W, C), labels (N,), rows (N,) -> {(layer, noise): pooled (N, C_layer)}.

    The same computation as `teacher(images, labels, rows)` with `teacher.noise = noise` and
    `teacher.layer = layer`, but one forward pass per noise level for all layers.
    """
    modules = teacher.feature_modules()
    unknown = [layer for layer in layers if layer not in modules]
    if unknown:
        raise DraError(f"{teacher.spec.name} has no layer(s) {unknown}; choose from {', '.join(modules)}")
    x, labels, eps, _ = teacher.prepare(images, labels, rows)
    device = x.device
    out = {}
    for noise in noises:
        with _at_noise(teacher, noise):
            sigma = torch.full((len(x),), teacher.default_sigma(), device=device)
        x_noisy, level = teacher.add_noise(x, eps, sigma)
        for layer, activation in _run_to_layers(teacher, x_noisy, level, labels, layers).items():
            out[layer, noise] = teacher.pool(activation)
    return out


class _AllCaptured(Exception):
    """Raised by the last layer hook to end the forward pass."""


def _run_to_layers(teacher: Teacher, x_noisy: Tensor, level: Tensor, labels: Tensor, layers: Sequence[str]):
    """{layer: float output} for every layer, from one forward pass that stops once all have run."""
    modules = teacher.feature_modules()
    captured: dict[str, Tensor] = {}

    def hook_for(layer):
        def hook(_module, _inputs, output):
            captured.setdefault(layer, output[0] if isinstance(output, tuple) else output)
            if len(captured) == len(set(layers)):
                raise _AllCaptured

        return hook

    handles = [modules[layer].register_forward_hook(hook_for(layer)) for layer in dict.fromkeys(layers)]
    try:
        teacher.run(x_noisy, level, labels)
    except _AllCaptured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer for layer in layers if layer not in captured]
    if missing:
        raise RuntimeError(f"layer(s) {missing} did not run")
    out = {layer: captured[layer].float() for layer in layers}
    if teacher.zero_channels and teacher.layer in out:  # as `Teacher.capture` does for the feature layer
        a = out[teacher.layer]
        index = torch.tensor(teacher.zero_channels, device=a.device)
        out[teacher.layer] = a.index_fill(1 if a.dim() == 4 else -1, index, 0.0)
    return out


@contextmanager
def _at_noise(teacher: Teacher, noise: float) -> Iterator[None]:
    """Temporarily read the teacher at another noise level (its units), so `default_sigma` converts it."""
    saved = teacher.noise
    teacher.noise = float(noise)
    try:
        yield
    finally:
        teacher.noise = saved


def _keys(layers: Sequence[str], noises: Sequence[float]) -> list[tuple[str, float]]:
    return [(layer, noise) for layer in layers for noise in noises]
