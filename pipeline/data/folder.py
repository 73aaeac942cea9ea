"""An image folder in the ImageNet layout: one sub-folder per class, image files inside.

Row i is the i-th entry of the index: (class folder, relative path) pairs sorted by class then by path. The
fingerprint hashes the whole index, so a file added, removed or renamed changes it and a store built on the old
folder refuses the new one. Images are decoded with Pillow as RGB (or L when option mode=L); option `size`
resizes the short side and center-crops to size x size, otherwise every image must already share one size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ImageSource, SourceSpec, check_labels

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}


class ImageFolder(ImageSource):
    """options: size (int, optional: short-side resize + center crop), mode ("RGB" or "L")."""

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
        self._size = int(spec.options["size"]) if spec.options.get("size") else None
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
                if self._size is not None:
                    im = center_crop(im, self._size)
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
                    "set the source option size=N to resize and center-crop"
                )
            out[k] = img
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256(super().fingerprint().encode())
        h.update("\n".join(self.files).encode())
        return h.hexdigest()[:16]


def center_crop(im, size: int):
    """Resize the short side to `size` (bicubic), then crop the central size x size square."""
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    if scale != 1:
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))
