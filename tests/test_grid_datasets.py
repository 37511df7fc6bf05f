"""The factor-grid datasets dsprites, shapes3d and mpi3d on small files in their real formats: factors, the image at
each grid position, dSprites' variants, training and every disentanglement metric, one-line errors."""
import json
import math
import re
import sys

import h5py
import numpy as np
import pytest
import torch
from helpers import (
    DSPRITES_SIZES,
    GRID_FILES,
    MPI3D_SIZES,
    SHAPES3D_SIZES,
    TINY,
    grid_overrides,
    sprites_images,
    trained_run,
    unloadable_pickle,
    write_dsprites_npz,
)

from vae_lab import evaluate
from vae_lab.checks import ConfigError
from vae_lab.data import dsprites
from vae_lab.data.base import grid_sizes, ravel_index
from vae_lab.data.dsprites import DSprites
from vae_lab.data.mpi3d import MPI3D
from vae_lab.data.npz import write_npz
from vae_lab.data.shapes3d import Shapes3D
from vae_lab.data.sprites import ORIENTATIONS, POSITIONS, SCALES, SHAPE_VALUES, Sprites, npz_latents

SPLITS = {"val_size": 0.1, "test_size": 0.1}


def _build(option, grid_dir, tmp_path, **kwargs):
    path = grid_dir / GRID_FILES[option]
    if option == "dsprites":
        return DSprites(path, **SPLITS, **kwargs)
    if option == "shapes3d":
        return Shapes3D(path, data_dir=tmp_path, **SPLITS, **kwargs)
    return MPI3D(path, factor_sizes=list(MPI3D_SIZES), data_dir=tmp_path, **SPLITS, **kwargs)


def _stored(option, grid_dir):
    """(images (N, C, 64, 64) uint8 as the file holds them, the file's factor sizes), read plainly."""
    path = grid_dir / GRID_FILES[option]
    if option == "shapes3d":
        with h5py.File(path) as f:
            return f["images"][()].transpose(0, 3, 1, 2), SHAPES3D_SIZES
    if option == "mpi3d":
        return np.load(path)["images"].transpose(0, 3, 1, 2), MPI3D_SIZES
    return np.load(path)["imgs"][:, None] * 255, DSPRITES_SIZES


@pytest.mark.parametrize("option", sorted(GRID_FILES))
def test_each_grid_batches_and_draws_the_image_stored_at_each_position(option, grid_dir, tmp_path):
    data = _build(option, grid_dir, tmp_path)
    images, sizes = _stored(option, grid_dir)
    kept = [k for k, s in enumerate(sizes) if s > 1]
    assert data.factor_sizes == tuple(sizes[k] for k in kept) and data.grid_sizes == sizes
    n = math.prod(sizes)
    assert sum(data.size(s) for s in ("train", "val", "test")) == n and data.size("test") == round(0.1 * n)
    index = torch.arange(data.size("train"))
    positions = data.positions("train", index)
    assert torch.equal(data.batch("train", index).mul(255).round(), torch.as_tensor(images[positions.numpy()]).float())
    factors = data.factors("train", index)
    full = torch.zeros(len(factors), len(sizes), dtype=torch.long)
    full[:, kept] = factors
    assert torch.equal(ravel_index(full, sizes), positions)  # factors() names each item's grid position
    g = torch.Generator().manual_seed(0)
    drawn = data.sample_factors(50, g)
    full = torch.zeros(50, len(sizes), dtype=torch.long)
    full[:, kept] = drawn
    expected = torch.as_tensor(images[ravel_index(full, sizes).numpy()]).float()
    assert torch.equal(data.images_for_factors(drawn, g).mul(255).round(), expected)


def test_dsprites_reads_its_npz_without_the_metadata_pickle(grid_dir):
    path = grid_dir / GRID_FILES["dsprites"]
    with pytest.raises(ModuleNotFoundError):  # what loading `metadata` would do
        np.load(path, allow_pickle=True)["metadata"]  # a pickle on purpose
    data = DSprites(path, **SPLITS)
    assert data.binary and data.shape == (1, 64, 64)
    assert data.images.shape == (math.prod(DSPRITES_SIZES), 512) and data.images.dtype == torch.uint8  # bit-packed
    classes = np.load(path)["latents_classes"]
    index = torch.arange(data.size("val"))
    assert np.array_equal(data.factors("val", index).numpy(), classes[data.positions("val", index).numpy(), 1:])


def test_dsprites_packs_the_images_a_chunk_at_a_time(grid_dir, monkeypatch):
    path = grid_dir / GRID_FILES["dsprites"]
    whole = dsprites.packed_images(path, math.prod(DSPRITES_SIZES))
    monkeypatch.setattr(dsprites, "_CHUNK", 100)  # 384 images: chunks of 100, 100, 100, 84
    assert np.array_equal(dsprites.packed_images(path, math.prod(DSPRITES_SIZES)), whole)
    assert np.array_equal(np.unpackbits(whole, axis=1).reshape(-1, 64, 64), np.load(path)["imgs"])


def test_sprites_and_dsprites_agree_on_the_factors(grid_dir):
    """Names, order, sizes and values: dSprites' file name spells its grid (co1sh3sc6or40x32y32), its latents_values
    are sprites' values of the same classes, and both draw the same sprite for the same factors."""
    assert DSprites(grid_dir / GRID_FILES["dsprites"], **SPLITS).factor_names == Sprites.factor_names
    assert dsprites.COLUMNS[1:] == Sprites.factor_names
    sizes = tuple(int(s) for s in re.findall(r"\d+", dsprites.FILE.split("_")[2]))
    assert sizes == (1, *Sprites.factor_sizes)
    classes, values = npz_latents(sizes)  # the whole grid's latents, as the real file holds them
    assert len(classes) == 737_280 and grid_sizes(classes, "latents") == sizes
    # metadata["latents_possible_values"] of DeepMind's file (its reloading notebook prints them)
    published = [[1.0], [1.0, 2.0, 3.0], np.linspace(0.5, 1, 6), np.linspace(0, 2 * np.pi, 40), np.linspace(0, 1, 32),
                 np.linspace(0, 1, 32)]
    for k, possible in enumerate(published):
        assert np.allclose(np.unique(values[:, k]), possible, atol=1e-6), dsprites.COLUMNS[k]
    tables = (SHAPE_VALUES, SCALES, ORIENTATIONS, POSITIONS, POSITIONS)
    data = DSprites(grid_dir / GRID_FILES["dsprites"], **SPLITS)
    index = torch.arange(data.size("train"))
    factors = data.factors("train", index)
    stored = np.load(grid_dir / GRID_FILES["dsprites"])["latents_values"][data.positions("train", index).numpy()]
    for k, table in enumerate(tables):  # the file's value of each factor is sprites' value of dsprites' class
        assert np.allclose(stored[:, k + 1], table.double()[factors[:, k]].numpy()), data.factor_names[k]
    g = torch.Generator().manual_seed(1)
    drawn = data.sample_factors(40, g)
    assert torch.equal(data.images_for_factors(drawn), Sprites(val_size=1, test_size=1).images_for_factors(drawn))


def _draws(data, factors, seed):
    return data.images_for_factors(factors, torch.Generator().manual_seed(seed))


def test_noshape_leaves_shape_out_of_the_factors_but_in_the_images(grid_dir):
    data = DSprites(grid_dir / GRID_FILES["dsprites"], variant="noshape", **SPLITS)
    assert data.factor_names == ("scale", "orientation", "pos_x", "pos_y") and data.factor_sizes == (2, 4, 4, 4)
    assert data.binary and data.factors("train", torch.arange(4)).shape == (4, 4)
    one = torch.tensor([[1, 2, 3, 0]]).repeat(60, 1)
    images = _draws(data, one, seed=0)
    by_shape = sprites_images(np.array([[0, s, 1, 2, 3, 0] for s in range(3)]))
    seen = {int(np.flatnonzero([np.array_equal(x[0].numpy(), b) for b in by_shape])[0]) for x in images}
    assert seen == {0, 1, 2}  # shape drawn afresh for each image
    assert torch.equal(images, _draws(data, one, seed=0))  # from the generator given


def test_color_and_noisy_as_disentanglement_lib_draws_them(grid_dir):
    path = grid_dir / GRID_FILES["dsprites"]
    plain = DSprites(path, **SPLITS)
    factors = plain.sample_factors(30, torch.Generator().manual_seed(2))
    mask = plain.images_for_factors(factors)  # (30, 1, 64, 64), 0 or 1
    color = DSprites(path, variant="color", **SPLITS)
    x = _draws(color, factors, seed=3)
    assert color.shape == (3, 64, 64) and x.shape == (30, 3, 64, 64) and not color.binary
    rgb = x.amax((2, 3))  # each image's colour: one per channel, in [0.5, 1)
    assert ((rgb >= 0.5) & (rgb < 1)).all() and torch.allclose(x, mask * rgb[:, :, None, None])
    assert torch.equal(x, _draws(color, factors, seed=3)) and not torch.equal(x, _draws(color, factors, seed=4))
    noisy = DSprites(path, variant="noisy", **SPLITS)
    y = _draws(noisy, factors, seed=3)
    sprite = mask.expand_as(y) == 1
    assert (y[sprite] == 1).all() and (y[~sprite] < 1).all() and y[~sprite].std() > 0.25  # U[0, 1): std 0.29
    assert torch.equal(y, _draws(noisy, factors, seed=3))
    batch = noisy.batch("train", torch.arange(8), torch.Generator().manual_seed(5))
    assert batch.shape == (8, 3, 64, 64) and not torch.equal(batch, noisy.batch("train", torch.arange(8)))
    with pytest.raises(ConfigError, match="binarize=static"):
        DSprites(path, variant="color", binarize="static", **SPLITS)
    with pytest.raises(ConfigError, match="variant='scream'"):
        DSprites(path, variant="scream", **SPLITS)


def test_shapes3d_converts_once_into_the_cache(grid_dir, tmp_path):
    first = _build("shapes3d", grid_dir, tmp_path)
    [cache] = (tmp_path / "cache").glob("shapes3d-*.npy")
    stamp = cache.stat().st_mtime_ns
    again = _build("shapes3d", grid_dir, tmp_path)
    assert cache.stat().st_mtime_ns == stamp and torch.equal(first.images, again.images)
    assert first.images.shape == (math.prod(SHAPES3D_SIZES), 3, 64, 64)


def test_mpi3d_sizes_from_the_image_count_or_given(grid_dir, tmp_path):
    path = grid_dir / GRID_FILES["mpi3d"]
    data = _build("mpi3d", grid_dir, tmp_path)
    assert "camera_height" not in data.factor_names  # one value in this grid: dropped
    with pytest.raises(ConfigError, match=r"480 images fill no known MPI3D grid .*1,036,800"):
        MPI3D(path, data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"factor_sizes=\[2, 2, 2, 1, 3, 4, 4\]: a grid of 384 images"):
        MPI3D(path, factor_sizes=[2, 2, 2, 1, 3, 4, 4], data_dir=tmp_path)
    with pytest.raises(ConfigError, match="version=real: path names mpi3d_toy.npz"):
        MPI3D(path, version="real", factor_sizes=list(MPI3D_SIZES), data_dir=tmp_path)


def _one_line(error, path, *phrases):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message


def test_damaged_dsprites_files_are_one_line_errors(tmp_path):
    good = write_dsprites_npz(tmp_path / "good.npz")
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in ("imgs", "latents_classes", "latents_values")}
    cases = {
        "missing.npz": (None, "no such file"),
        "no_imgs.npz": ({k: v for k, v in arrays.items() if k != "imgs"}, "no array `imgs`"),
        "small.npz": ({**arrays, "imgs": arrays["imgs"][:, :32, :32]}, "`imgs` is (384, 32, 32) uint8"),
        "float.npz": ({**arrays, "imgs": arrays["imgs"].astype(np.float32)}, "`imgs` is (384, 64, 64) float32"),
        "pickled.npz": ({**arrays, "latents_classes": unloadable_pickle()}, "`latents_classes` is () object"),
        "shuffled.npz": ({**arrays, "latents_classes": arrays["latents_classes"][::-1].copy()}, "row-major"),
        "fewer.npz": ({**arrays, "imgs": arrays["imgs"][:-1]}, "383 images `imgs` but 384 rows"),
    }
    for name, (members, phrase) in cases.items():
        if members is not None:
            write_npz(tmp_path / name, members)
        with pytest.raises(ConfigError) as error:
            DSprites(tmp_path / name, **SPLITS)
        _one_line(error, tmp_path / name, phrase, *([dsprites.FILE] if name != "shuffled.npz" else []))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigError) as error:
        DSprites(cut, **SPLITS)
    _one_line(error, cut, "not a complete .npz (zip) file")


def test_a_truncated_member_is_one_line(tmp_path):
    """A zip whose `imgs` member holds fewer bytes than its .npy header promises."""
    classes, values = npz_latents(DSPRITES_SIZES)
    rows = sprites_images(classes)
    path = write_npz(tmp_path / "short.npz", {"latents_classes": classes,
                                              "imgs": ((len(rows), 64, 64), np.uint8, [rows[:200]])})
    with pytest.raises(ConfigError) as error:
        DSprites(path, **SPLITS)
    _one_line(error, path, "`imgs` ends after 200 of its 384 rows")


def test_damaged_shapes3d_and_mpi3d_files_are_one_line_errors(grid_dir, tmp_path):
    with h5py.File(tmp_path / "nolabels.h5", "w") as f:
        f["images"] = np.zeros((4, 64, 64, 3), np.uint8)
    with h5py.File(tmp_path / "grey.h5", "w") as f:
        f["images"], f["labels"] = np.zeros((4, 64, 64), np.uint8), np.zeros((4, 6))
    source = (grid_dir / GRID_FILES["shapes3d"]).read_bytes()
    (tmp_path / "cut.h5").write_bytes(source[: len(source) // 2])
    for name, phrase in (("nolabels.h5", "no dataset `labels`"), ("grey.h5", "`images` is (4, 64, 64) uint8"),
                         ("cut.h5", "not a readable HDF5 file"), ("missing.h5", "no such file")):
        with pytest.raises(ConfigError) as error:
            Shapes3D(tmp_path / name, data_dir=tmp_path)
        _one_line(error, tmp_path / name, phrase, "3dshapes.h5")
    write_npz(tmp_path / "mpi3d_toy.npz", {"images": np.zeros((4, 64, 64), np.uint8)}, compress=False)
    source = (grid_dir / GRID_FILES["mpi3d"]).read_bytes()
    (tmp_path / "mpi3d_real.npz").write_bytes(source[: len(source) - 100])
    for name, version, phrase in (("mpi3d_toy.npz", "toy", "`images` is (4, 64, 64) uint8"),
                                  ("mpi3d_real.npz", "real", "not a complete .npz")):
        with pytest.raises(ConfigError) as error:
            MPI3D(tmp_path / name, version=version, data_dir=tmp_path)
        _one_line(error, tmp_path / name, phrase, name)


def test_shapes3d_without_h5py_says_how_to_install_it(grid_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` raises ImportError
    with pytest.raises(ConfigError, match=re.escape("pip install vae_lab[data]")) as error:
        _build("shapes3d", grid_dir, tmp_path)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def dsprites_run(grid_dir, tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("run") / "run",
                       ["dataset=dsprites", *grid_overrides(grid_dir)["dsprites"], "dataset.val_size=0.1", *TINY[3:]])


@pytest.mark.parametrize("option", ["shapes3d", "mpi3d"])
def test_a_few_training_steps(option, grid_dir, tmp_path):
    run = trained_run(tmp_path / "run", [f"dataset={option}", *grid_overrides(grid_dir)[option], f"data_dir={tmp_path}",
                                         "dataset.val_size=0.1", "likelihood=gaussian", *TINY[3:]])
    assert run.summary["steps"] == 6 and run.summary["status"] == "completed"


SIZED = ("mig_dlib", "mig_chen", "factor_vae", "dci", "sap", "beta_vae", "infomec", "unsupervised")


def test_dsprites_trains_and_every_disentanglement_metric_runs(dsprites_run, capsys):
    """The β story's six, InfoMEC and the unsupervised scores on the DeepMind file's format (disentanglement_lib's
    others: tests/test_metrics_dlib.py)."""
    assert dsprites_run.summary["steps"] == 6 and dsprites_run.summary["status"] == "completed"
    sizes = ("{mig_dlib:{n:300},mig_chen:{n_images:200,n_samples:100},factor_vae:{n_var:200,n_train:30,n_eval:20},"
             "dci:{n_train:150,n_test:80,n_estimators:5,max_features:16},sap:{n_train:150,n_test:80},"
             "beta_vae:{n_train:30,n_eval:20},infomec:{n:200},unsupervised:{n:300}}")
    evaluate.main([f"run={dsprites_run.dir}", "iwae.k=2", "max_images=32", "pictures=false", f"metric_sizes={sizes}",
                   f"metrics=[{','.join(SIZED)}]"])  # the others take minutes at their full sizes
    result = json.loads((dsprites_run.dir / "eval.json").read_text())
    assert set(result["disentanglement"]["protocol"]) == set(SIZED)
    assert set(result["disentanglement"]["mig_dlib"]["per_factor"]) == set(Sprites.factor_names)
    for key in ("mig_dlib", "mig_chen", "factor_vae", "dci_disentanglement", "dci_completeness", "sap", "beta_vae"):
        assert 0.0 <= result[key] <= 1.0, key


def test_streamed_training_is_the_resident_training_bit_for_bit_and_resumes_exactly(grid_dir, tmp_path):
    """dataset.resident=false gathers each batch from the memory-mapped cache in gather threads; the order and
    the draws (here dequantisation noise) stay in the training process, so the parameters are the resident run's."""
    common = ["dataset=shapes3d", *grid_overrides(grid_dir)["shapes3d"], f"data_dir={tmp_path}", "dataset.val_size=0.1",
              "dataset.dequantize=uniform", "likelihood=gaussian", *TINY[3:], "trainer.batch_size=16",
              "trainer.max_steps=8", "trainer.epochs=2"]
    trained_run(tmp_path / "resident", [*common, "dataset.resident=true"])
    stopped = trained_run(tmp_path / "streamed", [*common, "dataset.resident=false", "trainer.stop_at_step=5"])
    assert stopped.summary["status"] == "stopped"
    stopped.cfg.resume = str(tmp_path / "streamed")
    from vae_lab.train import train

    train(stopped.cfg, tmp_path / "streamed")
    a, b = (torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True) for run in ("resident", "streamed"))
    assert a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
