"""MPI3D (Gondal et al. 2019): a robot arm's object photographed (real) or rendered (toy, realistic) on a grid of 7
factors, from the npz files of https://github.com/rr-learning/disentanglement_dataset.

Each file holds `images` (N, 64, 64, 3) uint8 and no labels: the order is the grid's, row-major in object_color,
object_shape, object_size, camera_height, background_color, horizontal_axis, vertical_axis. The public release has
6 x 6 x 2 x 3 x 3 x 40 x 40 = 1,036,800 images in each version; disentanglement_lib's mpi3d.py (written for the
NeurIPS 2019 challenge's files) has 4 colours and 4 shapes for toy and realistic, 460,800 images: the sizes are
told apart by the image count, and `factor_sizes` gives others (small test files). The images are converted once,
a chunk at a time, into the decoded-image cache under `data_dir` as (N, 3, 64, 64), and read from there afterwards.
"""
import math
from pathlib import Path

import numpy as np

from vae_lab.checks import ConfigError, choice, int_list
from vae_lab.data.base import FactorGridData
from vae_lab.data.cache import cached, file_key
from vae_lab.data.npz import npz_rows

FILES = {"toy": "mpi3d_toy.npz", "realistic": "mpi3d_realistic.npz", "real": "mpi3d_real.npz"}  # disentanglement_lib's
FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color", "horizontal_axis",
                "vertical_axis")
KNOWN_SIZES = ((6, 6, 2, 3, 3, 40, 40), (4, 4, 2, 3, 3, 40, 40))  # the public release; the challenge's toy, realistic
SIDE = 64
_CHUNK = 2048  # images converted at a time: 24 MB


class MPI3D(FactorGridData):
    """One version's npz file as a factor grid; test/val/train splits of its positions drawn with `split_seed`;
    `seed` draws binarize=static's binarisation."""

    def __init__(self, path, version="toy", factor_sizes=None, data_dir="data", val_size=10000, test_size=10000,
                 split_seed=0, binarize="none", dequantize="none", resident="auto", memory_budget_gb=None,
                 memory_share=1.0, workers=2, seed=0, device="cpu"):
        choice("version", version, tuple(FILES))
        path = Path(path)
        other = {name: v for v, name in FILES.items() if v != version}
        if path.name in other:
            raise ConfigError(f"version={version}: path names {path.name}, the file of version={other[path.name]}; "
                              f"set dataset.version={other[path.name]} or give {FILES[version]}")
        if factor_sizes is not None:
            factor_sizes = int_list("factor_sizes", factor_sizes, allow_empty=False)
            if len(factor_sizes) != len(FACTOR_NAMES):
                raise ConfigError(f"factor_sizes={factor_sizes}: needs {len(FACTOR_NAMES)} sizes, of "
                                  f"{', '.join(FACTOR_NAMES)}")
        expected = f"MPI3D's {FILES[version]} (https://github.com/rr-learning/disentanglement_dataset)"
        with npz_rows(path, "images", (np.uint8,), (SIDE, SIDE, 3), expected) as (n, read):
            sizes = _sizes(n, factor_sizes, path)

            def fill(array):  # (N, 64, 64, 3) -> (N, 3, 64, 64), a chunk at a time
                for start in range(0, n, _CHUNK):
                    rows = read(_CHUNK)
                    array[start : start + len(rows)] = rows.transpose(0, 3, 1, 2)

            array = cached(data_dir, f"mpi3d_{version}", {"file": file_key([path]), "layout": "N,3,64,64"},
                           (n, 3, SIDE, SIDE), fill)
        super().__init__(array, FACTOR_NAMES, sizes, val_size=val_size, test_size=test_size, split_seed=split_seed,
                         binarize=binarize, dequantize=dequantize, resident=resident, memory_budget_gb=memory_budget_gb,
                         memory_share=memory_share, workers=workers, seed=seed, device=device)


def _sizes(n, given, path):
    """The grid's factor sizes: `given` when it fills the n images, else the known grid of n images."""
    if given is not None:
        if math.prod(given) != n:
            raise ConfigError(f"factor_sizes={given}: a grid of {math.prod(given)} images, but {path} holds {n}")
        return tuple(given)
    for sizes in KNOWN_SIZES:
        if math.prod(sizes) == n:
            return sizes
    raise ConfigError(f"{path}: {n} images fill no known MPI3D grid ({' or '.join(f'{math.prod(s):,}' for s in KNOWN_SIZES)} "
                      f"images); give dataset.factor_sizes, {len(FACTOR_NAMES)} sizes of {', '.join(FACTOR_NAMES)}")
