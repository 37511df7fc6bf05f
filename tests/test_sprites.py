"""The procedural dSprites grid: size, factors, determinism, shifts, and memory."""
import math

import torch

from vae_lab.data.sprites import FACTOR_SIZES, GRID_SIZE, Sprites


def _grid_index(shape, scale, orient, x, y):
    return (((shape * 6 + scale) * 40 + orient) * 32 + x) * 32 + y


def _image_at(d, **factors):
    """The image of one grid point, found through the test split by planting its grid index there."""
    d._index["test"][0] = _grid_index(**factors)
    return d.batch("test", torch.tensor([0]))[0, 0]


def test_grid_has_the_dsprites_factors():
    assert GRID_SIZE == 737_280 == 3 * 6 * 40 * 32 * 32
    d = Sprites(val_size=100, test_size=100)
    assert d.size("train") == GRID_SIZE - 200
    assert d.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    f = d.factors("train", torch.arange(5000))
    assert (f >= 0).all() and (f < torch.tensor(FACTOR_SIZES)).all()
    v = d.factor_values("train", torch.arange(5000))
    assert v[:, 1].min() >= 0.5 and v[:, 1].max() <= 1.0 and v[:, 2].max() <= 2 * math.pi + 1e-6
    assert v[:, 3].min() >= 0 and v[:, 3].max() <= 1


def test_splits_are_disjoint_and_seeded():
    a, b, c = Sprites(split_seed=0, seed=0), Sprites(split_seed=0, seed=1), Sprites(split_seed=1)
    assert torch.equal(a._index["val"], b._index["val"]) and not torch.equal(a._index["val"], c._index["val"])
    every = torch.cat([a._index[s] for s in ("train", "val", "test")])
    assert every.numel() == GRID_SIZE and torch.unique(every).numel() == GRID_SIZE
    assert Sprites(train_size=50).size("train") == 50


def test_images_are_binary_and_position_is_a_shift():
    d = Sprites(val_size=10, test_size=10)
    x = d.batch("train", torch.arange(256))
    assert x.shape == (256, 1, 64, 64) and set(x.unique().tolist()) <= {0.0, 1.0}
    base = _image_at(d, shape=2, scale=3, orient=7, x=4, y=9)
    moved = _image_at(d, shape=2, scale=3, orient=7, x=15, y=20)
    assert base.sum() > 20
    assert torch.equal(torch.roll(base, shifts=(11, 11), dims=(0, 1)), moved)
    # the image's centre of mass follows pos_x along columns and pos_y along rows
    cols = (moved.sum(0) * torch.arange(64)).sum() / moved.sum()
    rows = (moved.sum(1) * torch.arange(64)).sum() / moved.sum()
    assert abs(cols - (16 + 15)) < 2 and abs(rows - (16 + 20)) < 2


def test_scale_orientation_and_shape_change_the_image():
    d = Sprites(val_size=10, test_size=10)
    small, large = (_image_at(d, shape=0, scale=s, orient=0, x=16, y=16) for s in (0, 5))
    assert large.sum() > 3 * small.sum()
    upright, turned = (_image_at(d, shape=0, scale=5, orient=o, x=16, y=16) for o in (0, 5))
    assert not torch.equal(upright, turned)
    shapes = [_image_at(d, shape=s, scale=5, orient=0, x=16, y=16) for s in range(3)]
    assert all(not torch.equal(shapes[i], shapes[j]) for i in range(3) for j in range(i))
    # dSprites' 40 orientations run over [0, 2pi] with both ends (class k at k 2pi/39): the last is the first's picture
    assert torch.equal(upright, _image_at(d, shape=0, scale=5, orient=39, x=16, y=16))


def test_the_grid_is_never_held_in_memory():
    d = Sprites()
    held = sum(t.numel() * t.element_size() for t in vars(d).values() if isinstance(t, torch.Tensor))
    held += sum(t.numel() * t.element_size() for t in d._index.values())
    assert held < 16 * 2**20  # the full grid would be 3 GB of uint8
