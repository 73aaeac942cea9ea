"""An image folder in the ImageNet layout: one sub-folder per class, image files inside.

Row i is the i-th entry of the index: (class folder, relative path) pairs sorted by class then by path. The
fingerprint hashes the whole index and every file's bytes as stored (not the decoded pixels: hashing is ~10x
faster than JPEG decoding), so a file added, removed, renamed or edited changes it and a store built on the old
folder refuses the new one. The files' digest is remembered under their (path, size, mtime) in
$DRA_FINGERPRINT_CACHE (default $DRA_HOME/fingerprints; "off": always hash), so an unchanged folder costs one
stat per file after its first fingerprint.

Images are decoded with Pillow as RGB (or L when option mode=L). Geometry options, with torchvision's
Resize(int) and CenterCrop conventions (short side to `resize`, long side truncated; crop offsets rounded):
`resize=R&crop=C` (RobustBench's ImageNet "Res256Crop224" is resize=256&crop=224 with interpolation=bilinear),
`crop=C` alone, or `size=N` (resize N and crop N, bicubic: teachers' input). Without them every image must
already share one size.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from dra_pipeline.data.base import ImageSource, SourceSpec, check_labels
from dra_pipeline.errors import DataError
from dra_pipeline.fetch import home
from dra_pipeline.hashing import folder_sha256_cached

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}


INTERPOLATIONS = ("bilinear", "bicubic")


class ImageFolder(ImageSource):
    """options: size, or resize and/or crop (ints, pixels); interpolation (bilinear, bicubic); mode (RGB, L)."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        root = Path(spec.path)
        if not root.is_dir():
            raise DataError(f"{root}: image folder not found")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DataError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(
                p.relative_to(root).as_posix()
                for p in (root / name).rglob("*")
                if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
            files += found
            labels += [label] * len(found)
        if not files:
            raise DataError(f"{root}: no image files ({', '.join(sorted(EXTENSIONS))}) under its class folders")
        self.class_names = classes
        self.files = files
        self.labels, self.num_classes = check_labels(
            str(root), np.array(labels), count=len(files), num_classes=len(classes)
        )
        self._geometry = _geometry(root, spec.options)
        self._mode = spec.options.get("mode", "RGB")
        if self._mode not in ("RGB", "L"):
            raise DataError(f"{root}: option mode must be RGB or L, found {self._mode!r}")
        first = self._decode(0)
        self._shape = first.shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._shape

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        path = Path(self.spec.path) / self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert(self._mode)
                if self._geometry is not None:
                    im = resize_and_crop(im, *self._geometry)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{path}: cannot decode image ({e})") from None
        return arr[..., None] if arr.ndim == 2 else arr

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self._shape), dtype=np.uint8)
        for k, i in enumerate(np.asarray(indices, dtype=np.int64)):
            img = self._decode(int(i))
            if img.shape != self._shape:
                raise DataError(
                    f"{self.spec.path}/{self.files[i]}: size {img.shape} differs from {self._shape}; "
                    "set the source option size=N (or resize=R&crop=C) to resize and center-crop"
                )
            out[k] = img
        return out

    @functools.cached_property
    def _fingerprint(self) -> str:
        """Count, shape, classes, labels, the decoding options, then each file's relative path and bytes."""
        root = Path(self.spec.path)
        h = self._fingerprint_header()
        h.update(json.dumps(self.spec.options, sort_keys=True).encode())
        h.update(folder_sha256_cached(root, [root / f for f in self.files], fingerprint_cache()).encode())
        return h.hexdigest()[:16]


def fingerprint_cache() -> Path | None:
    """Where folder digests are remembered: $DRA_FINGERPRINT_CACHE, default $DRA_HOME/fingerprints; None if off."""
    chosen = os.environ.get("DRA_FINGERPRINT_CACHE", "")
    if chosen.strip().lower() == "off":
        return None
    return Path(chosen).expanduser() if chosen else home() / "fingerprints"


def _geometry(root: Path, options: dict) -> tuple[int | None, int | None, str] | None:
    """(resize, crop, interpolation) from the options, or None when images are taken as they are."""
    known = {"size", "resize", "crop"} & options.keys()
    if not known:
        return None
    if "size" in known and len(known) > 1:
        raise DataError(f"{root}: option size=N means resize=N&crop=N; give size or resize/crop, not both")
    try:
        values = {k: int(options[k]) for k in known}
    except ValueError:
        raise DataError(f"{root}: options {', '.join(sorted(known))} must be whole numbers of pixels") from None
    if min(values.values()) < 1:
        raise DataError(f"{root}: options {', '.join(sorted(known))} must be at least 1 pixel")
    interpolation = options.get("interpolation", "bicubic" if "size" in values else "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"{root}: option interpolation must be {' or '.join(INTERPOLATIONS)}, found {interpolation!r}")
    if "size" in values:
        return values["size"], values["size"], interpolation
    return values.get("resize"), values.get("crop"), interpolation


def resize_and_crop(im, resize: int | None, crop: int | None, interpolation: str = "bilinear"):
    """A PIL image with its short side resized to `resize` (long side int(resize * long / short), Pillow's
    antialiased filter), then its central crop x crop square (offsets round((side - crop) / 2)); either step is
    skipped when None. These are torchvision's Resize(int) and CenterCrop conventions on PIL images."""
    from PIL import Image

    if resize is not None:
        w, h = im.size
        size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        if size != (w, h):
            filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
            im = im.resize(size, filters[interpolation])
    if crop is not None:
        w, h = im.size
        if crop > w or crop > h:
            raise DataError(f"image of {w}x{h} is smaller than the crop {crop}; add resize=R with R >= {crop}")
        left, top = int(round((w - crop) / 2)), int(round((h - crop) / 2))
        im = im.crop((left, top, left + crop, top + crop))
    return im
