"""Images and labels in one HDF5 file (datasets `images` and `labels` by default, names overridable)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dra_pipeline.data.base import ImageSource, SourceSpec, check_images_and_labels, declared_classes
from dra_pipeline.errors import DataError


class Hdf5Images(ImageSource):
    """options: images (dataset name, default "images"), labels (default "labels"), num_classes (optional)."""

    def __init__(self, spec: SourceSpec):
        import h5py

        self.spec = spec
        self._images_key = spec.options.get("images", "images")
        labels_key = spec.options.get("labels", "labels")
        path = Path(spec.path)
        if not path.is_file():
            raise DataError(f"{path} not found")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
        with f:
            for key in (self._images_key, labels_key):
                if key not in f:
                    raise DataError(f"{path}: no dataset {key!r} (found {sorted(f.keys())}); set its name in the spec")
                if not isinstance(f[key], h5py.Dataset):
                    raise DataError(f"{path}: {key!r} is a {type(f[key]).__name__}, not a dataset; name a dataset")
            images = f[self._images_key]
            self._shape = tuple(images.shape)
            dtype = images.dtype
            labels = f[labels_key][()]
        self.labels, self.num_classes = check_images_and_labels(
            str(path), self._shape, dtype, labels, declared_classes(spec)
        )
        self._file = None
        self._pid = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._shape[1:]

    def _dataset(self):
        # h5py handles must not cross a fork: reopen in each process (data-loader workers).
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.spec.path, "r")
            self._pid = os.getpid()
        return self._file[self._images_key]

    def read(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        # h5py fancy indexing wants strictly increasing indices: read the unique sorted rows, then scatter.
        unique, inverse = np.unique(idx, return_inverse=True)
        return self._dataset()[unique][inverse]

    def __getstate__(self):
        return {**self.__dict__, "_file": None, "_pid": None}
