"""3D Shapes (Kim & Mnih 2018) from DeepMind's 3dshapes.h5: 480,000 RGB 64x64 images of a grid of 6 factors.

The file (https://github.com/deepmind/3d-shapes) holds `images` (480,000, 64, 64, 3) uint8 and `labels` (480,000, 6)
float64, the factor values floor_hue 10 x wall_hue 10 x object_hue 10 x scale 8 x shape 4 x orientation 15 in
row-major order. Reading HDF5 item by item is slow, so the images are converted once, a chunk at a time, into the
decoded-image cache under `data_dir` as (N, 3, 64, 64), and read from there (memory-mapped) afterwards.
"""
from pathlib import Path

import numpy as np

from vae_lab.checks import ConfigError
from vae_lab.data.base import FactorGridData, grid_sizes
from vae_lab.data.cache import cached, file_key

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SIDE = 64
EXPECTED = ("DeepMind's 3dshapes.h5 (https://github.com/deepmind/3d-shapes): `images` (N, 64, 64, 3) uint8 and "
            "`labels` (N, 6) float")
_CHUNK = 2048  # images converted at a time: 24 MB


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ConfigError("dataset=shapes3d reads HDF5 files with h5py, which is not installed: "
                          "pip install vae_lab[data]") from None
    return h5py


class Shapes3D(FactorGridData):
    """The .h5 file's images as a factor grid, factor sizes from the labels' distinct values; splits drawn with
    `split_seed`; `seed` draws binarize=static's binarisation."""

    def __init__(self, path, data_dir="data", val_size=10000, test_size=10000, split_seed=0, binarize="none",
                 dequantize="none", resident="auto", memory_budget_gb=None, memory_share=1.0, workers=2, seed=0,
                 device="cpu"):
        h5py = _h5py()
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file; expected {EXPECTED}")
        try:
            f = h5py.File(path, "r")
        except OSError as e:  # not HDF5, truncated: h5py's errors are OSErrors
            raise _unreadable(path, e) from None
        with f:
            images = _member(f, path, "images", (SIDE, SIDE, 3), "u")
            labels = _read(path, _member(f, path, "labels", (len(FACTOR_NAMES),), "f"), slice(None))
            if len(images) != len(labels):
                raise ConfigError(f"{path}: {len(images)} images but {len(labels)} labels; expected {EXPECTED}")
            # each column's distinct values, in increasing order, are that factor's classes
            classes = np.stack([np.unique(column, return_inverse=True)[1].ravel() for column in labels.T], 1)
            sizes = grid_sizes(classes, path)

            def fill(array):  # (N, 64, 64, 3) -> (N, 3, 64, 64), a chunk at a time
                for start in range(0, len(images), _CHUNK):
                    chunk = _read(path, images, slice(start, start + _CHUNK))
                    array[start : start + len(chunk)] = chunk.transpose(0, 3, 1, 2)

            array = cached(data_dir, "shapes3d", {"file": file_key([path]), "layout": "N,3,64,64"},
                           (len(images), 3, SIDE, SIDE), fill)
        super().__init__(array, FACTOR_NAMES, sizes, val_size=val_size, test_size=test_size, split_seed=split_seed,
                         binarize=binarize, dequantize=dequantize, resident=resident, memory_budget_gb=memory_budget_gb,
                         memory_share=memory_share, workers=workers, seed=seed, device=device)


def _unreadable(path, error):
    return ConfigError(f"{path}: not a readable HDF5 file ({str(error).strip()}); expected {EXPECTED}")


def _read(path, member, rows):
    """member[rows] as a numpy array; a damaged file is a ConfigError."""
    try:
        return member[rows]
    except OSError as e:
        raise _unreadable(path, e) from None


def _member(f, path, key, row_shape, kind):
    """The HDF5 dataset `key`, checked to be (N, *row_shape) of the dtype kind `kind` (u: uint8, f: float)."""
    if key not in f:
        raise ConfigError(f"{path}: no dataset `{key}` (it holds {', '.join(f.keys()) or 'nothing'}); expected {EXPECTED}")
    member = f[key]
    ok = getattr(member, "ndim", 0) == 1 + len(row_shape) and member.shape[1:] == row_shape and (
        member.dtype == np.uint8 if kind == "u" else member.dtype.kind == "f")
    if not ok:
        raise ConfigError(f"{path}: `{key}` is {getattr(member, 'shape', 'a group')} {getattr(member, 'dtype', '')}; "
                          f"expected {EXPECTED}")
    return member
