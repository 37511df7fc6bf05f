"""`dataset=cifar10` and `dataset=celeba` on small files in their real formats: splits, labels and attributes, pixel
layout, CelebA's crop and the decoded-image cache, one-line errors for missing or damaged files, the downloads (mocked,
no network) and a few training steps of each."""
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CELEBA_ATTRIBUTES, TINY, trained_run, write_celeba_dir, write_cifar_dir
from PIL import Image

from vae_lab.checks import ConfigError
from vae_lab.data import celeba, cifar
from vae_lab.data.celeba import CelebA, crop_resize
from vae_lab.data.cifar import CIFAR10

# TINY without its sprites keys (batch 32, 6 steps, small networks), enough epochs for 6 steps, one validation: the
# discretised logistic's mean, which the validation pictures draw, is a sum of 255 sigmoids a pixel
QUICK = [*TINY[3:], "trainer.epochs=10", "trainer.eval_every=6"]


def one_line(error):
    message = str(error.value)
    assert "\n" not in message, message
    return message


def everything(data, split):
    return torch.arange(data.size(split))


# --- cifar10 ---------------------------------------------------------------------------------------------------------

def test_cifar_splits_labels_and_a_known_pixel_through_the_channel_major_layout(tmp_path):
    images, labels = write_cifar_dir(tmp_path, 20, seed=1)
    test_batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    records = bytearray(test_batch.read_bytes())
    record = 3 * cifar.RECORD  # the test split's fourth image: label 7, pixel (row 5, column 9) = (200, 100, 50)
    records[record] = 7
    for channel, value in enumerate((200, 100, 50)):
        records[record + 1 + channel * 1024 + 5 * 32 + 9] = value
    test_batch.write_bytes(bytes(records))

    data = CIFAR10(path=tmp_path, download=False, val_size=0.25, seed=1)
    assert data.shape == (3, 32, 32) and [data.size(s) for s in ("train", "val", "test")] == [75, 25, 20]
    x = data.batch("test", torch.tensor([3]))
    assert torch.equal(x[0, :, 5, 9] * 255, torch.tensor([200.0, 100.0, 50.0]))
    assert data.labels("test", torch.tensor([3])).item() == 7
    train, val = (set(data.positions(s, everything(data, s)).tolist()) for s in ("train", "val"))
    assert train | val == set(range(100)) and not train & val
    index = everything(data, "val")
    positions = data.positions("val", index)
    assert torch.equal(data.batch("val", index) * 255, torch.from_numpy(images[positions.numpy()]).float())
    assert torch.equal(data.labels("val", index), torch.from_numpy(labels[positions.numpy()]))
    again = CIFAR10(path=tmp_path, download=False, val_size=25, seed=1)  # a count, the same seed: the same split
    assert torch.equal(again.positions("val", index), positions)


def test_cifar_reads_the_archive_without_unpacking_it(tmp_path):
    images, _ = write_cifar_dir(tmp_path / "archive", 20, seed=2, archive=True)
    assert not (tmp_path / "archive" / "cifar-10-batches-bin").exists()
    data = CIFAR10(path=tmp_path / "archive", download=False, val_size=10)
    assert torch.equal(data.images, torch.from_numpy(images))
    assert not (tmp_path / "archive" / "cifar-10-batches-bin").exists()


def test_cifar_damaged_files_are_one_line_naming_them(tmp_path):
    write_cifar_dir(tmp_path, 20, seed=3)
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    whole = batch.read_bytes()
    batch.write_bytes(whole[:-100])
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path, download=False)
    assert "data_batch_3.bin" in one_line(e) and "truncated" in one_line(e)
    batch.write_bytes(whole[: 5 * cifar.RECORD])  # cut at a record boundary
    with pytest.raises(ConfigError, match=r"data_batch_3.bin: 5 records where the other batch files hold 20"):
        CIFAR10(path=tmp_path, download=False)
    batch.write_bytes(bytes([12]) + whole[1:])  # a label CIFAR-10 does not have
    with pytest.raises(ConfigError, match="data_batch_3.bin: record 0 has label 12"):
        CIFAR10(path=tmp_path, download=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cifar-10-binary.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path / "broken", download=False)
    assert "cifar-10-binary.tar.gz: cannot be read" in one_line(e)


@pytest.mark.parametrize("name", ["test_batch.bin", "data_batch_1.bin"])
def test_cifar_a_file_cut_at_a_record_boundary_is_named(tmp_path, name):
    """Every file of the release holds as many records as the others (10,000): one with fewer was cut, the test file
    as well as a training batch."""
    write_cifar_dir(tmp_path, 20, seed=3)
    short = tmp_path / "cifar-10-batches-bin" / name
    short.write_bytes(short.read_bytes()[: 19 * cifar.RECORD])
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path, download=False, val_size=10)
    assert one_line(e).startswith(f"{short}: 19 records where the other batch files hold 20: truncated")


def test_cifar_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path, download=False)
    assert f"path={tmp_path}" in one_line(e) and cifar.URL in one_line(e) and "dataset.download=true" in one_line(e)
    write_cifar_dir(tmp_path, 4, seed=4)
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path, download=False)
    assert "test_batch.bin: cannot be read" in one_line(e) and cifar.URL in one_line(e)


def test_cifar_download_fetches_the_binary_version_with_its_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils

    calls = []

    def fake_download(url, download_root, md5=None, **kwargs):  # what unpacking the archive leaves
        calls.append((url, md5))
        write_cifar_dir(download_root, 4, seed=5)

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    data = CIFAR10(path=tmp_path / "new", download=True, val_size=4)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")]
    assert data.size("train") == 16
    CIFAR10(path=tmp_path / "new", download=True, val_size=4)
    assert len(calls) == 1  # found, not fetched again

    def offline(url, download_root, md5=None, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(ConfigError) as e:
        CIFAR10(path=tmp_path / "elsewhere", download=True)
    assert "the download failed (<urlopen error" in one_line(e) and cifar.URL in one_line(e)


# --- celeba ----------------------------------------------------------------------------------------------------------

@pytest.fixture()
def celeba_dir(tmp_path):
    """(the CelebA folder, what write_celeba_dir returned) of 20 images: 12 train, 4 val, 4 test."""
    folder = tmp_path / "celeba"
    return folder, write_celeba_dir(folder, 20, seed=0)


def test_celeba_splits_attributes_and_labels(celeba_dir, tmp_path):
    folder, (names, codes, attributes) = celeba_dir
    data = CelebA(path=folder, data_dir=tmp_path / "data", size=32)
    assert data.shape == (3, 32, 32) and [data.size(s) for s in ("train", "val", "test")] == [12, 4, 4]
    assert data.attribute_names == CELEBA_ATTRIBUTES
    for code, split in enumerate(("train", "val", "test")):
        index = everything(data, split)
        positions = data.positions(split, index).numpy()
        assert (codes[positions] == code).all()
        assert torch.equal(data.attributes(split, index), torch.from_numpy(attributes[positions]))
        assert torch.equal(data.labels(split, index), torch.from_numpy(attributes[positions, 20]))  # Male
    smiling = CelebA(path=folder, data_dir=tmp_path / "data", size=32, label_attribute="Attribute_31")
    assert torch.equal(smiling.labels("test", torch.arange(4)), smiling.attributes("test", torch.arange(4))[:, 31])
    assert CelebA(path=folder, data_dir=tmp_path / "data", size=32, label_attribute=None).labels("val", [0]) is None
    x = data.batch("train", torch.arange(12))
    assert x.shape == (12, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and x.std() > 0.05


def test_celeba_attribute_file_in_another_order_is_read_by_name(celeba_dir, tmp_path):
    folder, (_, _, attributes) = celeba_dir
    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines[:2] + lines[2:][::-1]) + "\n")
    data = CelebA(path=folder, data_dir=tmp_path / "data", size=16)
    positions = data.positions("train", everything(data, "train")).numpy()
    assert torch.equal(data.attributes("train", everything(data, "train")), torch.from_numpy(attributes[positions]))


def test_celeba_crop_is_the_centre_148_square_resized(tmp_path):
    """A 178x218 image whose centre 148x148 square (columns 15-162, rows 35-182) has four coloured quadrants, black
    outside it: the 64x64 result shows the quadrants in place and no black."""
    picture = np.zeros((218, 178, 3), dtype=np.uint8)
    colours = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 255)}
    for (row, column), colour in colours.items():
        picture[35 + 74 * row : 35 + 74 * (row + 1), 15 + 74 * column : 15 + 74 * (column + 1)] = colour
    file = tmp_path / "centre.jpg"
    Image.fromarray(picture).save(file, quality=100, subsampling=0)
    out = crop_resize(file, 148, 64)
    assert out.shape == (3, 64, 64) and out.dtype == np.uint8
    for (row, column), colour in colours.items():
        quadrant = out[:, 32 * row : 32 * (row + 1), 32 * column : 32 * (column + 1)].astype(int)
        assert np.abs(quadrant - np.array(colour)[:, None, None]).max() <= 12, (row, column)
    decoded = Image.open(file).convert("RGB")  # the same as cropping the decoded image at (15, 35) and shrinking it
    expected = np.asarray(decoded.crop((15, 35, 163, 183)).resize((64, 64), Image.Resampling.BOX)).transpose(2, 0, 1)
    assert np.array_equal(out, expected)


def test_celeba_decodes_once_into_the_cache(celeba_dir, tmp_path, monkeypatch):
    folder, _ = celeba_dir
    decoded = []
    real = celeba.crop_resize
    monkeypatch.setattr(celeba, "crop_resize", lambda *a: decoded.append(a[0]) or real(*a))
    first = CelebA(path=folder, data_dir=tmp_path / "data", size=16)
    assert len(decoded) == 20 and len(list((tmp_path / "data" / "cache").glob("celeba-*.npy"))) == 1
    second = CelebA(path=folder, data_dir=tmp_path / "data", size=16)
    assert len(decoded) == 20 and torch.equal(first.images, second.images)
    CelebA(path=folder, data_dir=tmp_path / "data", size=8)  # another size is another cache
    assert len(decoded) == 40
    image = folder / "img_align_celeba" / "000005.jpg"
    image.write_bytes(image.read_bytes())  # a changed image (its mtime) is decoded again
    CelebA(path=folder, data_dir=tmp_path / "data", size=16)
    assert len(decoded) == 60


def test_celeba_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(ConfigError) as e:
        CelebA(path=tmp_path / "nowhere", data_dir=tmp_path)
    message = one_line(e)
    assert "img_align_celeba/, list_eval_partition.txt, list_attr_celeba.txt" in message
    assert celeba.PAGE in message and f"into {tmp_path / 'nowhere'}" in message


def test_celeba_damaged_files_are_one_line_naming_them(celeba_dir, tmp_path):
    folder, _ = celeba_dir
    (folder / "img_align_celeba" / "000007.jpg").unlink()
    with pytest.raises(ConfigError) as e:
        CelebA(path=folder, data_dir=tmp_path / "data")
    assert "000007.jpg: listed in list_eval_partition.txt but missing" in one_line(e)
    (folder / "img_align_celeba" / "000007.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(ConfigError) as e:
        CelebA(path=folder, data_dir=tmp_path / "data")
    assert "000007.jpg: not a readable JPEG" in one_line(e)
    assert not list((tmp_path / "data" / "cache").glob("*.npy"))  # nothing half-decoded is kept

    attributes = folder / "list_attr_celeba.txt"
    lines = attributes.read_text().splitlines()
    for bad, expected in ((["19", *lines[1:]], "line 1 says 19 images, 20 lines follow"),
                          ([*lines[:5], lines[5] + "  1", *lines[6:]], "line 6: 41 values where line 2 names 40"),
                          ([*lines[:3], lines[3].replace("-1", "0", 1), *lines[4:]], "line 4: 40 values"),
                          (lines[1:], "line 1 must be the image count"),
                          ([*lines[:-1], "999999.jpg" + lines[-1][10:]], "no line for 000020.jpg")):
        attributes.write_text("\n".join(bad) + "\n")
        with pytest.raises(ConfigError) as e:
            CelebA(path=folder, data_dir=tmp_path / "data")
        assert "list_attr_celeba.txt" in one_line(e) and expected in one_line(e), bad[:2]
    attributes.write_text("\n".join(lines) + "\n")

    with pytest.raises(ConfigError, match="label_attribute='Smiling': not an attribute"):
        CelebA(path=folder, data_dir=tmp_path / "data", label_attribute="Smiling")
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(ConfigError) as e:
        CelebA(path=folder, data_dir=tmp_path / "data")
    assert "list_eval_partition.txt, line 2: '000002.jpg train' is not" in one_line(e)
    (folder / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {i % 2 * 2}\n" for i in range(20)))
    with pytest.raises(ConfigError, match="list_eval_partition.txt: no image in the val split"):
        CelebA(path=folder, data_dir=tmp_path / "data")


def test_celeba_download_fetches_the_three_files_torchvision_lists(tmp_path, monkeypatch):
    import torchvision.datasets.utils
    from torchvision.datasets import CelebA as TorchvisionCelebA

    source = tmp_path / "source"
    write_celeba_dir(source, 10, seed=6)
    with zipfile.ZipFile(source / "img_align_celeba.zip", "w") as z:
        for jpg in sorted((source / "img_align_celeba").iterdir()):
            z.write(jpg, f"img_align_celeba/{jpg.name}")
    fetched = []

    def fake_drive(file_id, root, filename=None, md5=None):
        fetched.append((file_id, md5, filename))
        Path(root).mkdir(exist_ok=True)
        (Path(root) / filename).write_bytes((source / filename).read_bytes())

    monkeypatch.setattr(torchvision.datasets.utils, "download_file_from_google_drive", fake_drive)
    data = CelebA(path=tmp_path / "celeba", data_dir=tmp_path / "data", size=16, download=True)
    wanted = {"img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt"}
    assert sorted(fetched) == sorted(f for f in TorchvisionCelebA.file_list if f[2] in wanted)
    assert data.size("train") == 6

    def over_quota(*args, **kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently.")

    monkeypatch.setattr(torchvision.datasets.utils, "download_file_from_google_drive", over_quota)
    with pytest.raises(ConfigError) as e:
        CelebA(path=tmp_path / "empty", data_dir=tmp_path / "data", download=True)
    assert "download from Google Drive failed (Too many users" in one_line(e) and celeba.PAGE in one_line(e)


# --- training --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [["likelihood=discretized_logistic", "encoder=conv", "decoder=conv"], []],
                         ids=["discretized_logistic_conv", "default"])
def test_cifar10_trains(model, tmp_path):
    """The README's `vae-train dataset=cifar10 likelihood=discretized_logistic encoder=conv decoder=conv`, and the
    default model, for a few steps: bits/dim is a code length with the discretised logistic."""
    write_cifar_dir(tmp_path / "cifar", 20, seed=7)
    run = trained_run(tmp_path / "run", ["dataset=cifar10", f"dataset.path={tmp_path / 'cifar'}",
                                         "dataset.val_size=20", f"data_dir={tmp_path / 'data'}", *model, *QUICK])
    assert run.summary["steps"] == 6 and math.isfinite(run.summary["elbo"])
    if model:
        assert 0 < run.summary["bits_per_dim"] < 12  # random bytes: about 8 bits a pixel


def test_celeba_trains(tmp_path):
    write_celeba_dir(tmp_path / "celeba", 30, seed=8)
    run = trained_run(tmp_path / "run", ["dataset=celeba", f"dataset.path={tmp_path / 'celeba'}", "dataset.size=32",
                                         f"data_dir={tmp_path / 'data'}", *QUICK])
    assert run.summary["steps"] == 6 and math.isfinite(run.summary["elbo"])
    assert list((tmp_path / "data" / "cache").glob("celeba-*.npy"))
