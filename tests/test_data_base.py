"""What every file-backed dataset stands on: split sizes as fractions or counts, one uint8 array with each split as
positions in it, a factor grid in row-major order, and the decoded-image cache."""
import threading
import time

import numpy as np
import pytest
import torch
from helpers import compose_config, grid_overrides

from vae_lab.checks import ConfigError
from vae_lab.data import base
from vae_lab.data.base import FactorGridData, ImageData, IndexedImageData, split_sizes
from vae_lab.data.cache import cached, file_key, path_for
from vae_lab.data.idx import read_idx
from vae_lab.data.sprites import GRID_SIZE, Sprites
from vae_lab.runtime.build import build


def test_split_sizes_take_fractions_and_counts():
    assert split_sizes(1000, 0.1, 0.05) == (100, 50)
    assert split_sizes(1000, 7, 0.5) == (7, 500)
    assert split_sizes(10, 0.01, 0.01) == (1, 1)  # at least one image each
    for val, test, key in ((0, 5, "val_size=0"), (5, 1.5, "test_size=1.5"), (5, "a", "test_size='a'"),
                           (600, 400, "leave no image")):
        with pytest.raises(ConfigError, match=key):
            split_sizes(1000, val, test)


def test_indexed_splits_are_disjoint_seeded_and_keep_labels():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    data = IndexedImageData(images, labels=torch.arange(100) % 7, val_size=0.1, test_size=20, seed=3)
    positions = {s: set(data.positions(s, torch.arange(data.size(s))).tolist()) for s in ("train", "val", "test")}
    assert [len(positions[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    assert set().union(*positions.values()) == set(range(100))
    x = data.batch("val", torch.arange(10))
    pos = data.positions("val", torch.arange(10))
    assert torch.equal(x[:, 0, 0, 0] * 255, pos.float()) and torch.equal(data.labels("val", torch.arange(10)), pos % 7)
    again = IndexedImageData(images, val_size=0.1, test_size=20, seed=3)
    assert torch.equal(again.positions("test", torch.arange(20)), data.positions("test", torch.arange(20)))


def test_given_splits_and_static_binarisation():
    images = torch.full((6, 1, 4, 4), 128, dtype=torch.uint8)
    data = IndexedImageData(images, splits={"train": [0, 1, 2], "val": [3], "test": [4, 5]}, binarize="static")
    assert data.size("train") == 3 and data.size("test") == 2
    x = data.batch("train", torch.arange(3))
    assert set(x.unique().tolist()) == {0.0, 1.0} and torch.equal(x, data.batch("train", torch.arange(3)))


def test_factor_grid_drops_single_valued_factors_and_draws_the_right_images():
    names, sizes = ("colour", "shape", "x"), (1, 3, 4)
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)  # image i holds its own position
    data = FactorGridData(images, names, sizes, val_size=2, test_size=2)
    assert data.factor_names == ("shape", "x") and data.factor_sizes == (3, 4)
    factors = torch.tensor([[0, 0], [2, 3], [1, 2]])
    assert (data.images_for_factors(factors) * 255).flatten().tolist() == [0, 11, 6]
    index = torch.arange(data.size("train"))
    f = data.factors("train", index)
    assert torch.equal(f[:, 0] * 4 + f[:, 1], data.positions("train", index))
    with pytest.raises(ConfigError, match="do not fill a grid"):
        FactorGridData(images[:10], names, sizes)


def test_the_cache_is_written_once_and_whole(tmp_path):
    calls = []

    def fill(array):
        calls.append(1)
        array[:] = 7

    key = {"files": [["a.png", 10, 1]], "size": 4}
    a = cached(tmp_path, "folder", key, (5, 1, 4, 4), fill)
    b = cached(tmp_path, "folder", key, (5, 1, 4, 4), fill)
    assert len(calls) == 1 and (a == 7).all() and np.array_equal(a, b) and not a.flags.writeable
    cached(tmp_path, "folder", {**key, "size": 8}, (5, 1, 8, 8), fill)  # a changed key is decoded again
    assert len(calls) == 2

    def broken(array):
        array[:2] = 1
        raise ValueError("bad file")

    with pytest.raises(ValueError):
        cached(tmp_path, "folder", {"other": 1}, (5, 1, 4, 4), broken)
    assert not path_for(tmp_path, "folder", {"other": 1}).exists()
    assert not list((tmp_path / "cache").glob("*.tmp.npy"))  # nothing half-written left


def test_file_key_changes_with_the_file(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"123")
    before = file_key([f])
    f.write_bytes(b"1234")
    assert file_key([f]) != before


def _memmap(tmp_path, n=300, shape=(3, 8, 8), seed=0):
    """A read-only memory-mapped .npy of n random uint8 images, as the decoded-image cache hands over."""
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8))
    return np.load(path, mmap_mode="r")


def test_auto_keeps_the_images_resident_when_they_fit_the_budget(tmp_path, monkeypatch, caplog):
    images = _memmap(tmp_path)  # 57,600 bytes
    for available, resident in ((10**9, True), (10**4, False)):
        monkeypatch.setattr(base, "available_memory", lambda device, available=available: available)
        with caplog.at_level("INFO", logger="vae_lab"):
            caplog.clear()
            data = IndexedImageData(images, resident="auto")
        assert data.resident is resident and isinstance(data.images, torch.Tensor) is resident
        assert "resident=auto: " in caplog.text and ("streamed" in caplog.text) is not resident
    assert IndexedImageData(images, resident="auto", memory_budget_gb=1e-6).resident is False  # 1,074 bytes
    assert IndexedImageData(images, resident="auto", memory_budget_gb=1).resident is True
    with pytest.raises(ConfigError, match="resident='yes'"):
        IndexedImageData(images, resident="yes")


def test_copies_on_one_machine_share_its_memory_budget(tmp_path, monkeypatch, caplog):
    """resident=auto: a dataset given memory_share=0.5 (one of two copies of the images in one machine's memory)
    counts on half the budget; memory_budget_gb, when given, is its own."""
    images = _memmap(tmp_path)  # 57,600 bytes
    monkeypatch.setattr(base, "available_memory", lambda device: 2 * 100_000)  # the budget: 100,000 bytes
    assert IndexedImageData(images, resident="auto").resident is True
    with caplog.at_level("INFO", logger="vae_lab"):
        assert IndexedImageData(images, resident="auto", memory_share=0.5).resident is False
    assert "0.5 of the memory available x 0.5" in caplog.text
    assert IndexedImageData(images, resident="auto", memory_budget_gb=1, memory_share=0.5).resident is True
    with pytest.raises(ConfigError, match="memory_share=0:"):
        IndexedImageData(images, memory_share=0)


@pytest.mark.parametrize("draws", [{}, {"binarize": "dynamic"}, {"binarize": "static"}, {"dequantize": "uniform"}])
def test_streamed_batches_are_the_resident_ones_bit_for_bit(tmp_path, draws):
    images = _memmap(tmp_path)
    made = {name: IndexedImageData(images, labels=np.arange(300) % 5, resident=r, seed=4, workers=w, **draws)
            for name, r, w in ((True, True, 2), (False, False, 2), ("in_step", False, 0))}
    order = made[True].epoch_order("train", 2, seed=1)
    for streamed in (made[False], made["in_step"]):
        assert torch.equal(order, streamed.epoch_order("train", 2, seed=1))
    # 270 train images: 5 batches, more than the AHEAD buffers (reused), the last a short one
    index = [order[i : i + 64] for i in range(0, len(order), 64)]
    out = {}
    for r, data in made.items():
        g = torch.Generator().manual_seed(9)
        out[r] = [data.batch("train", i, g) for i in index]
        out[r] += list(data.stream("train", iter(index), g))  # streamed: gathered by threads, or in the step
        assert torch.equal(data.labels("train", index[0]), made[True].labels("train", index[0]))
    assert len(out[False]) == 2 * len(index) > 2 * base.AHEAD
    for streamed in (out[False], out["in_step"]):
        for a, b in zip(out[True], streamed):
            assert torch.equal(a, b)
    assert torch.equal(out[True][0], out[True][len(index)]) is (not draws or draws.get("binarize") == "static")
    for data in made.values():  # one process's rows of each global batch (several processes): the same rows
        g = torch.Generator().manual_seed(9)
        [data.batch("train", i, g) for i in index]  # the draws of the batches above, to reach the same state

        def rows(n):
            return slice(n // 3, n // 3 + 5)
        for whole, part in zip(out[True][len(index) :], data.stream("train", iter(index), g, rows=rows), strict=True):
            assert torch.equal(whole[rows(len(whole))], part)


def test_a_stream_gathers_ahead_in_threads_into_reused_buffers_and_ends_them(tmp_path, monkeypatch):
    images = _memmap(tmp_path, n=2000)
    data = IndexedImageData(images, resident=False, workers=2, val_size=10, test_size=10)
    order = data.epoch_order("train", 0, seed=0)
    assert order.device.type == "cpu"  # positions looked up where they are gathered: no read back from a GPU
    index = [order[i : i + 50] for i in range(0, 1000, 50)]
    expected = data.batch("train", index[0])
    calls, real = [], base.gather
    monkeypatch.setattr(base, "gather", lambda array, positions, out=None: calls.append(
        (threading.current_thread().name, out)) or real(array, positions, out))  # each buffer kept: no address reused
    stream = data.stream("train", iter(index))
    first = next(stream)
    deadline = time.monotonic() + 10
    while len(calls) < base.AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(calls) == base.AHEAD  # the next batches gathered before they are asked for, and no more
    assert torch.equal(first, expected)
    for _ in range(10):
        next(stream)
    assert {name.rsplit("_", 1)[0] for name, _ in calls} == {"vae_lab-gather"}  # not in this thread
    assert len({out.data_ptr() for _, out in calls}) == base.AHEAD < len(calls)  # the same buffers, over and over
    stream.close()  # stopped early (a signal, trainer.stop_at_step): its threads end
    assert not [t for t in threading.enumerate() if t.name.startswith("vae_lab-gather")]


def test_a_failed_gather_is_raised_in_the_training_thread(tmp_path, monkeypatch):
    data = IndexedImageData(_memmap(tmp_path), resident=False, workers=1)

    def fails(array, positions, out=None):
        raise OSError("Input/output error")
    monkeypatch.setattr(base, "gather", fails)
    with pytest.raises(OSError, match="Input/output error"):
        next(data.stream("train", iter([torch.arange(8)])))
    assert not [t for t in threading.enumerate() if t.name.startswith("vae_lab-gather")]


def test_streamed_factor_grid_draws_the_resident_images(tmp_path):
    images = _memmap(tmp_path, n=2 * 3 * 4 * 5)
    made = [FactorGridData(images, ("a", "b", "c", "d"), (2, 3, 4, 5), nuisance=("b",), val_size=10, test_size=10,
                           binarize="dynamic", resident=r) for r in (True, False)]
    factors = torch.stack([torch.randint(s, (50,)) for s in (2, 4, 5)], 1)
    x = [d.images_for_factors(factors, torch.Generator().manual_seed(3)) for d in made]
    assert torch.equal(x[0], x[1]) and x[0].shape == (50, 3, 8, 8)
    index = torch.arange(20)
    assert torch.equal(made[0].factors("train", index), made[1].factors("train", index))


def test_streaming_reads_no_copy_of_the_whole_array(tmp_path, monkeypatch):
    images = _memmap(tmp_path)
    data = IndexedImageData(images, resident=False)
    assert data.images is images  # still the memory map
    reads = []
    real = base.gather
    monkeypatch.setattr(base, "gather", lambda array, positions, out=None: reads.append(len(positions)) or real(array, positions, out))
    data.batch("train", torch.arange(64))
    assert reads == [64]  # one gather per batch, not one read per image


# --- the seeded split: dataset.split_seed draws it, seed does not ----------------------------------------------------

SEEDED = ("sprites", "mnist", "cifar10", "image_folder", "mpi3d")  # each way a split is drawn: grid, files, cache


def _seeded(option, data_dir, image_dir, grid_dir, *overrides):
    small = {"sprites": ["dataset.val_size=64", "dataset.test_size=64"],
             "image_folder": [f"dataset.path={image_dir}", "dataset.size=8"],
             "mpi3d": [*grid_overrides(grid_dir)["mpi3d"], "dataset.val_size=0.1"]}.get(option, ["dataset.val_size=100"])
    cfg = compose_config([f"dataset={option}", f"data_dir={data_dir}", *small, *overrides])
    return build("dataset", cfg.dataset)


def _images(data, split):
    return data.batch(split, torch.arange(data.size(split)))


@pytest.mark.parametrize("option", SEEDED)
def test_two_seeds_are_scored_on_the_same_val_and_test_images(option, dataset_data_dir, image_dir, grid_dir):
    one, two = (_seeded(option, dataset_data_dir, image_dir, grid_dir, f"seed={s}") for s in (1, 2))
    for split in ("val", "test"):
        same = torch.equal(_images(one, split), _images(two, split))
        assert same, f"{option}: seeds 1 and 2 hold different {split} images"
    other = _seeded(option, dataset_data_dir, image_dir, grid_dir, "seed=1", "dataset.split_seed=1")
    assert not torch.equal(_images(one, "val"), _images(other, "val"))


def _drawn_before_split_seed(n, val, test):
    """(val, test) positions of n images as the seeded split drew them before split_seed, with seed 0: a permutation
    of the n, test its first `test`, val the next `val` (test=0: a dataset whose test split is its own files)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return order[test : test + val], order[:test]


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("option", SEEDED)
def test_the_default_split_is_seed_0s_split_of_before(option, seed, dataset_data_dir, image_dir, grid_dir):
    data = _seeded(option, dataset_data_dir, image_dir, grid_dir, f"seed={seed}")
    if option == "mnist":  # the split's images: TensorImageData keeps copies, not positions
        train_x = read_idx(dataset_data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz")
        val, _ = _drawn_before_split_seed(len(train_x), 100, 0)
        assert torch.equal((_images(data, "val") * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(train_x[val.numpy()]))
        return
    where = data.grid_index if option == "sprites" else data.positions
    n = GRID_SIZE if option == "sprites" else len(data.images)
    held_out = data.size("test")
    if option == "cifar10":  # its test split is test_batch.bin, after the training batches' n images
        n, held_out = n - held_out, 0
    val, test = _drawn_before_split_seed(n, data.size("val"), held_out)
    assert torch.equal(where("val", torch.arange(data.size("val"))), val)
    if held_out:
        assert torch.equal(where("test", torch.arange(data.size("test"))), test)


# --- the contract: what the rest of vae_lab asks of a dataset, named once in ImageData --------------------------------

def test_the_contract_is_the_base_class():
    """Each name the contract lists is defined on ImageData; a dataset that provides nothing says which name it
    lacks when it is asked for one it must provide, and has the defaults of the rest."""
    contract = (*ImageData.REQUIRED, *ImageData.REQUIRED_WITH_FACTORS, *ImageData.PROVIDED)
    assert len(set(contract)) == len(contract) and all(hasattr(ImageData, name) for name in contract)

    class Nothing(ImageData):
        pass

    data = Nothing()
    for name, call in (("shape", lambda: data.shape), ("size", lambda: data.size("train")),
                       ("batch", lambda: data.batch("train", torch.arange(2))),
                       ("factors", lambda: data.factors("train", torch.arange(2))),
                       ("images_for_factors", lambda: data.images_for_factors(torch.zeros(2, 0)))):
        with pytest.raises(NotImplementedError, match="Nothing"):
            call()
        assert name in ImageData.REQUIRED or name in ImageData.REQUIRED_WITH_FACTORS
    assert data.labels("train", torch.arange(2)) is None and data.value_range == (0.0, 1.0)
    assert data.factor_names == () and data.sample_factors(3).shape == (3, 0) and data.order_device == data.device
    assert not data.binary and Nothing(binarize="dynamic").binary


def test_binary_by_nature_or_binarised():
    assert Sprites(val_size=1, test_size=1).binary  # 0/1 pixels, whatever binarize says
    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    assert not IndexedImageData(images, val_size=1, test_size=1).binary
    assert IndexedImageData(images, val_size=1, test_size=1, binarize="static").binary
