"""dSprites (Matthey et al. 2017) from DeepMind's npz file, and disentanglement_lib's variants of it.

The file (https://github.com/deepmind/dsprites-dataset) holds 737,280 binary 64x64 images, `imgs`, in row-major
order of the grid colour 1 x shape 3 x scale 6 x orientation 40 x posX 32 x posY 32 (`latents_classes`), and a
pickled `metadata` that is never loaded. The images are held bit-packed, 512 bytes each (377 MB on the device instead
of 3 GB), read and packed a chunk at a time, and unpacked per batch on the device.

Variants as disentanglement_lib (disentanglement_lib/data/ground_truth/dsprites.py, named_data.py) defines them:
none is its dsprites_full; noshape its dsprites_noshape (shape is no latent factor, but stays in the images: drawn at
random for each image drawn for given factors); color its color_dsprites (ColorDSprites: the sprite times a colour
drawn per image, each RGB channel uniform in [0.5, 1)); noisy its noisy_dsprites (NoisyDSprites: uniform noise in
[0, 1) added to each pixel and channel, clipped at 1, so the background is noise and the sprite white). Colours and
noise are drawn afresh each time an image is drawn, from the generator `batch` and `images_for_factors` are given.
scream_dsprites needs a painting (scream.jpg) and is left out.
"""
import math

import numpy as np
import torch

from vae_lab.checks import ConfigError, choice
from vae_lab.data.base import FactorGridData, grid_sizes
from vae_lab.data.npz import npz_rows, read_npz_array

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
EXPECTED = f"dSprites' {FILE} (https://github.com/deepmind/dsprites-dataset)"
# latents_classes' columns (the file's color, shape, scale, orientation, posX, posY) in vae_lab.data.sprites' names;
# colour has one value and is dropped
COLUMNS = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")
SIDE = 64
VARIANTS = ("none", "noshape", "color", "noisy")
BINARY = ("none", "noshape")  # the variants whose pixels are 0 or 1
_CHUNK = 4096  # images read and packed at a time: 16 MB of uint8


class DSprites(FactorGridData):
    """The npz file's images as a factor grid; test/val/train splits of its positions drawn with `split_seed`. The
    variants none and noshape are binary by nature (binarize=static has nothing to draw), color and noisy draw their
    colours from the generator each batch is drawn with: `seed` draws nothing here."""

    def __init__(self, path, variant="none", val_size=10000, test_size=10000, split_seed=0, binarize="none", seed=0,
                 device="cpu"):
        self.variant = choice("variant", variant, VARIANTS)
        if binarize == "static" and variant not in BINARY:
            raise ConfigError(f"binarize=static: variant={variant} draws its colours afresh for each image, so there "
                              "is no fixed image to binarise once; use binarize=dynamic or none")
        sizes = grid_sizes(read_npz_array(path, "latents_classes", (np.int64, np.int32), (len(COLUMNS),), EXPECTED),
                           path)  # the classes (35 MB) are freed before the images are read
        super().__init__(packed_images(path, math.prod(sizes)), COLUMNS, sizes,
                         nuisance=("shape",) if variant == "noshape" else (), val_size=val_size, test_size=test_size,
                         split_seed=split_seed, binarize=binarize, seed=seed, device=device)
        self.shape = (1 if variant in BINARY else 3, SIDE, SIDE)
        self._shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=self.device)  # np.packbits: first pixel high
        self.binary_by_nature = variant in BINARY

    def binarize_once(self, images):
        return images  # 0/1 pixels: a Bernoulli draw of each is itself

    def images_at(self, positions):
        bits = (self.images[positions].unsqueeze(-1) >> self._shifts) & 1  # (n, 512, 8): pixel 8j + i is bit 7 - i
        return bits.mul_(255).view(-1, 1, SIDE, SIDE)

    def _float(self, x, generator):
        x = x.float().div_(255)  # (n, 1, 64, 64), 0 or 1
        n = len(x)
        if self.variant == "color":  # ColorDSprites: observations * uniform(0.5, 1, [n, 1, 1, 3])
            x = x * torch.rand(n, 3, 1, 1, generator=generator, device=x.device).mul_(0.5).add_(0.5)
        elif self.variant == "noisy":  # NoisyDSprites: minimum(observations + uniform(0, 1, [n, 64, 64, 3]), 1)
            x = torch.rand(n, 3, SIDE, SIDE, generator=generator, device=x.device).add_(x).clamp_(max=1)
        return self._dynamic(x, generator)


def packed_images(path, n):
    """`imgs` of the npz file as (n, 512) uint8, each image's 4,096 pixels bit-packed, read a chunk at a time."""
    packed = np.empty((n, SIDE * SIDE // 8), dtype=np.uint8)
    with npz_rows(path, "imgs", (np.uint8,), (SIDE, SIDE), EXPECTED) as (count, read):
        if count != n:
            raise ConfigError(f"{path}: {count} images `imgs` but {n} rows of `latents_classes`; expected {EXPECTED}")
        for start in range(0, n, _CHUNK):
            rows = read(_CHUNK)
            packed[start : start + len(rows)] = np.packbits(rows.reshape(len(rows), -1), axis=1)
    return packed
