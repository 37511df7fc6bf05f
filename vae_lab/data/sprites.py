"""A procedural reproduction of dSprites (Matthey et al. 2017): 737,280 binary 64x64 images, 5 known factors.

Each (shape, scale, orientation) is rendered once into a 32x32 patch (720 patches, 2.9 MB); position is a shift,
so an image is its patch scattered into an empty 64x64 canvas. The 3 GB grid is never held in memory.
"""
import functools
import math

import numpy as np
import torch

from vae_lab.checks import number
from vae_lab.data.base import ImageData, ravel_index, seeded_splits, unravel_index

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
GRID_SIZE = math.prod(FACTOR_SIZES)
IMAGE, PATCH = 64, 32
SHAPES = ("square", "ellipse", "heart")
# The factor values of dSprites' npz (metadata["latents_possible_values"], printed in its reloading notebook): shape
# 1, 2, 3; scale linspace(0.5, 1, 6); orientation linspace(0, 2π, 40), both ends included, so class k is turned by
# k·2π/39 and classes 0 and 39 draw the same picture; positions linspace(0, 1, 32).
SHAPE_VALUES = torch.tensor([1.0, 2.0, 3.0])
SCALES = torch.linspace(0.5, 1.0, 6)
ORIENTATIONS = torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64)
POSITIONS = torch.linspace(0.0, 1.0, 32)
_SUPERSAMPLE = 4  # sub-pixel samples per axis when rasterising, so small rotations stay distinguishable


def npz_latents(sizes=(1, *FACTOR_SIZES)):
    """(latents_classes (N, 6) int64, latents_values (N, 6) float64) as dSprites' npz holds them (colour first, of one
    value, 1), in row-major order of the grid of the first sizes[k] classes of each factor (the whole grid by
    default): what a file in dSprites' format drawn from these sprites holds (tests, scripts/dsprites_memory.py)."""
    classes = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1).astype(np.int64)
    tables = [torch.ones(1), SHAPE_VALUES, SCALES, ORIENTATIONS, POSITIONS, POSITIONS]
    values = np.stack([table.double().numpy()[classes[:, k]] for k, table in enumerate(tables)], 1)
    return classes, values


def _inside(shape, u, v):
    """Membership of points (u, v) in the unit-sized shape, centred on its centroid, before scaling."""
    if shape == "square":
        return (u.abs() <= 1) & (v.abs() <= 1)
    if shape == "ellipse":
        return (u / 1.25) ** 2 + (v / 0.6) ** 2 <= 1
    # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, y pointing up (image rows point down), centroid moved to 0
    x, y = u * 1.05, -v * 1.05 + 0.17
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


@functools.lru_cache(maxsize=1)  # pure, and a process may build the dataset several times (tests, sweeps)
def render_patches():
    """(720, 32*32) float patches indexed by (shape * 6 + scale) * 40 + orientation; shape centred at pixel (16, 16)."""
    s = _SUPERSAMPLE
    offsets = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    coords = (torch.arange(PATCH, dtype=torch.float64)[:, None] + offsets).flatten() - PATCH // 2  # (32*s,)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    patches = []
    for shape in SHAPES:
        for scale in SCALES.double():
            half = 10.0 * scale  # a scale-1 square is 20 px wide, so every rotation fits the 32 px patch
            for angle in ORIENTATIONS.double():
                c, sn = math.cos(angle), math.sin(angle)
                u = (c * cols + sn * rows) / half  # rotate the sample points by -angle
                v = (-sn * cols + c * rows) / half
                cover = _inside(shape, u, v).double().reshape(PATCH, s, PATCH, s).mean((1, 3))
                patches.append((cover >= 0.5).float().flatten())
    return torch.stack(patches)


class Sprites(ImageData):
    """dSprites' factor grid; test/val/train splits of the 737,280 grid indices drawn with `split_seed`
    (`seeded_splits`). The images are binary: `seed` draws nothing here."""

    shape = (1, IMAGE, IMAGE)
    binary_by_nature = True  # every pixel 0 or 1: a Bernoulli is a probability of them, and its -ELBO a code length
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self, val_size=10000, test_size=10000, train_size=None, split_seed=0, binarize="none", seed=0,
                 device="cpu"):
        super().__init__(binarize=binarize, seed=seed, device=device)
        val_size = int(number("val_size", val_size, low=1, high=GRID_SIZE // 4, integer=True))
        test_size = int(number("test_size", test_size, low=1, high=GRID_SIZE // 4, integer=True))
        self._index = seeded_splits(GRID_SIZE, val_size, test_size, split_seed)
        if train_size is not None:
            n = int(number("train_size", train_size, low=1, high=len(self._index["train"]), integer=True))
            self._index["train"] = self._index["train"][:n]
        self._index = {k: v.to(self.device) for k, v in self._index.items()}
        self.patches = render_patches().to(self.device, copy=True)  # (720, 1024)
        r, c = torch.meshgrid(torch.arange(PATCH), torch.arange(PATCH), indexing="ij")
        self.patch_offsets = (r * IMAGE + c).flatten().to(self.device)  # (1024,) canvas offsets of patch pixels

    def size(self, split):
        return len(self._index[split])

    def grid_index(self, split, index):
        return self._index[split][torch.as_tensor(index, device=self.device)]

    def factors(self, split, index):
        """Factor classes (B, 5) in FACTOR_NAMES order: integers in [0, FACTOR_SIZES[k])."""
        return unravel_index(self.grid_index(split, index), FACTOR_SIZES)

    def factor_values(self, split, index):
        """Factor values (B, 5) as dSprites' latents_values: shape 1-3, scale in [0.5, 1], orientation in [0, 2pi],
        x and y in [0, 1]."""
        f = self.factors(split, index).cpu()
        return torch.stack([SHAPE_VALUES[f[:, 0]], SCALES[f[:, 1]], ORIENTATIONS[f[:, 2]].float(),
                            POSITIONS[f[:, 3]], POSITIONS[f[:, 4]]], 1).to(self.device)

    def labels(self, split, index):
        return self.factors(split, index)[:, 0]

    def batch(self, split, index, generator=None):
        return self._render(self.grid_index(split, index), generator)

    def images_for_factors(self, factors, generator=None):
        """Images (n, 1, 64, 64) of the factor classes (n, 5), rendered like `batch` from their grid indices."""
        return self._render(ravel_index(self._checked_factors(factors), FACTOR_SIZES), generator)

    def _render(self, g, generator):
        """Images (B, 1, 64, 64) of the grid indices g (B,)."""
        y, x = g % 32, (g // 32) % 32
        patch = g // (32 * 32)  # (shape * 6 + scale) * 40 + orientation
        canvas = torch.zeros(len(g), IMAGE * IMAGE, device=self.device)
        # Scatter the 1,024 patch pixels of each image rather than gather all 4,096 canvas pixels: a quarter of the
        # reads (scripts/bench.py: sprites_batch).
        target = (y * IMAGE + x)[:, None] + self.patch_offsets  # (B, 1024)
        canvas.scatter_(1, target, self.patches[patch])
        return self._dynamic(canvas.view(-1, *self.shape), generator)
