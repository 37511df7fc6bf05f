"""dataset=image_folder: every PNG/JPEG under a folder decoded once with Pillow (EXIF orientation, palettes and alpha
on white, 16-bit levels scaled), short side resized and centre cropped, labels from the sub-folders, the decode
cached under data_dir; unreadable files skipped or named; bad keys refused in one line."""
import json
import logging
import time

import numpy as np
import pytest
import torch
from helpers import TINY, compose_config, trained_run, write_image_folder
from PIL import Image

from vae_lab import evaluate
from vae_lab.checks import ConfigError
from vae_lab.data import image_folder
from vae_lab.data.image_folder import ImageFolder, decode
from vae_lab.runtime.build import build
from vae_lab.runtime.config import check_root


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **kwargs)
    return path


def _solid(h, w, value, dtype=np.uint8):
    return np.full((h, w, *np.shape(value)), value, dtype=dtype)


@pytest.fixture
def count_decodes(monkeypatch):
    """How many times ImageFolder decodes a file."""
    calls = []

    def counting(*args):
        calls.append(args[0])
        return decode(*args)

    monkeypatch.setattr(image_folder, "decode", counting)
    return calls


def test_png_and_jpeg_in_grey_and_rgb(tmp_path):
    rgb, grey = (200, 100, 50), 77
    files = {"rgb.png": _save(tmp_path / "rgb.png", _solid(12, 12, rgb)),
             "grey.png": _save(tmp_path / "grey.png", _solid(12, 12, grey)),
             "rgb.jpg": _save(tmp_path / "rgb.jpg", _solid(12, 12, rgb), quality=95),
             "grey.jpeg": _save(tmp_path / "grey.JPEG", _solid(12, 12, grey), quality=95)}
    for name, path in files.items():
        x = decode(path, 8, 3)
        assert x.shape == (3, 8, 8) and x.dtype == np.uint8
        x = x.astype(int)
        expected = np.array(rgb if "rgb" in name else (grey,) * 3)[:, None, None]
        assert np.abs(x - expected).max() <= (0 if name.endswith("png") else 3), name
    assert decode(files["grey.png"], 8, 1).shape == (1, 8, 8) and (decode(files["grey.png"], 8, 1) == grey).all()
    # ITU-R 601-2 luma, Pillow's convert("L"): 0.299 R + 0.587 G + 0.114 B
    assert abs(int(decode(files["rgb.png"], 8, 1)[0, 0, 0]) - round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)) <= 1
    data = ImageFolder(tmp_path, size=8, val_size=1, test_size=1, data_dir=tmp_path / "data")
    assert data.files == ("grey.JPEG", "grey.png", "rgb.jpg", "rgb.png") and data.shape == (3, 8, 8)
    assert data.labels("train", torch.arange(2)) is None and data.classes == ()  # no sub-folders: no labels


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:, :20] = 255  # as stored: the left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: shown turned 90 degrees clockwise, so the left half becomes the top half
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    x = decode(path, 16, 1)[0].astype(int)  # shown 20 wide, 40 high: the centre square is rows 10-30
    assert x[:6].min() > 240 and x[-6:].max() < 15  # top white, bottom black (unturned it would be left/right)


def test_palette_transparency_and_alpha_are_composited_on_white(tmp_path):
    index = np.zeros((8, 8), dtype=np.uint8)
    index[:, 4:] = 1
    palette = Image.fromarray(index, "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0: red (transparent below), 1: blue
    palette.save(tmp_path / "palette.png", transparency=0)
    x = decode(tmp_path / "palette.png", 8, 3)
    assert (x[:, :, :3] == 255).all() and (x[:, :, 5:] == np.array([0, 0, 255])[:, None, None]).all()

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :, 3] = 255
    rgba[:, 4:, 1] = 255  # right half opaque green
    rgba[:2, :3] = (0, 0, 0, 0)  # transparent black: white
    rgba[4:, :3] = (0, 0, 0, 128)  # half-transparent black: mid grey
    _save(tmp_path / "rgba.png", rgba)
    x = decode(tmp_path / "rgba.png", 8, 3).astype(int)
    assert (x[:, :2, :2] == 255).all() and (x[:, :, 6:] == np.array([0, 255, 0])[:, None, None]).all()
    assert (abs(x[:, 6:, :2] - 127) <= 1).all()
    assert decode(tmp_path / "rgba.png", 8, 1)[0, 0, 0] == 255


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.zeros((8, 8), dtype=np.uint16)
    levels[:, :4], levels[:, 4:] = 65535, 257 * 100
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    x = decode(path, 8, 1)[0]
    assert (x[:, :2] == 255).all() and (x[:, 6:] == 100).all()  # clipping would make both 255
    assert (decode(path, 8, 3)[:, :, 6:] == 100).all()


def test_non_square_images_are_resized_and_centre_cropped(tmp_path):
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :20], wide[:, 20:40], wide[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # the centre square is green
    _save(tmp_path / "wide.png", wide)
    x = decode(tmp_path / "wide.png", 10, 3).astype(int)
    assert x.shape == (3, 10, 10)
    assert (abs(x[:, :, 3:7] - np.array([0, 255, 0])[:, None, None]) <= 2).all()  # away from the cut edges
    _save(tmp_path / "tall.png", wide.transpose(1, 0, 2))
    x = decode(tmp_path / "tall.png", 10, 3).astype(int)
    assert (abs(x[:, 3:7, :] - np.array([0, 255, 0])[:, None, None]) <= 2).all()
    small = np.full((4, 16), 200, dtype=np.uint8)
    small[:, 0] = small[:, -1] = 0  # beyond the reach of the kernel around the centre 4x4
    _save(tmp_path / "small.png", small)
    assert (decode(tmp_path / "small.png", 16, 1) == 200).all()  # the centre 4x4, upscaled


def test_sub_folders_are_labels_and_root_files_their_own_class(tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", 6, size=8, classes=("b_dogs", "a_cats"))
    (root / "b_dogs" / "deep").mkdir()
    _save(root / "b_dogs" / "deep" / "pup.png", _solid(8, 8, 9))
    (root / ".hidden").mkdir()
    _save(root / ".hidden" / "x.png", _solid(8, 8, 9))
    (root / "notes.txt").write_text("not an image")
    data = ImageFolder(root, size=8, val_size=1, test_size=1, data_dir=tmp_path / "data")
    assert data.classes == ("a_cats", "b_dogs") and len(data.files) == 13
    labels = torch.cat([data.labels(s, torch.arange(data.size(s))) for s in ("train", "val", "test")])
    positions = torch.cat([data.positions(s, torch.arange(data.size(s))) for s in ("train", "val", "test")])
    by_file = {data.files[p]: int(y) for p, y in zip(positions, labels)}
    assert by_file["a_cats/00000.png"] == 0 and by_file["b_dogs/deep/pup.png"] == 1 and sorted(by_file.values()) == [0] * 6 + [1] * 7

    _save(root / "stray.png", _solid(8, 8, 9))
    data = ImageFolder(root, size=8, val_size=1, test_size=1, data_dir=tmp_path / "data")
    assert data.classes == ("a_cats", "b_dogs", ".")
    stray = data.files.index("stray.png")
    assert int(data._labels[stray]) == 2 and int(data._labels[data.files.index("a_cats/00001.png")]) == 0


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, count_decodes):
    root = write_image_folder(tmp_path / "images", 5, size=12)
    kwargs = dict(size=8, val_size=1, test_size=1, data_dir=tmp_path / "data")
    first = ImageFolder(root, **kwargs)
    assert len(count_decodes) == 10 and not list(root.rglob("*.npy"))  # the cache is under data_dir, not the folder
    assert len(list((tmp_path / "data" / "cache").glob("image_folder-*.npy"))) == 2  # the images, which decoded
    again = ImageFolder(root, **kwargs)
    assert len(count_decodes) == 10 and torch.equal(again.images, first.images)
    ImageFolder(root, **{**kwargs, "channels": 1})  # other settings: decoded again
    assert len(count_decodes) == 20
    changed = root / "circles" / "00002.png"
    _save(changed, _solid(12, 12, (1, 2, 3)))
    third = ImageFolder(root, **kwargs)
    assert len(count_decodes) == 30
    position = third.files.index("circles/00002.png")
    assert (third.images[position] == torch.tensor([1, 2, 3]).view(3, 1, 1)).all()


def test_corrupt_files_are_skipped_with_one_line_or_stop_naming_them(tmp_path, caplog, count_decodes):
    root = write_image_folder(tmp_path / "images", 5, size=8)
    (root / "circles" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    good = (root / "squares" / "00001.png").read_bytes()
    (root / "squares" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    kwargs = dict(size=8, val_size=1, test_size=1, data_dir=tmp_path / "data")
    with pytest.raises(ConfigError) as stop:
        ImageFolder(root, on_error="stop", **kwargs)
    message = str(stop.value)
    assert "\n" not in message and message.startswith(f"{root / 'circles' / 'broken.png'}: cannot be decoded")
    assert "on_error=skip" in message and not list((tmp_path / "data" / "cache").glob("*.npy"))  # nothing written
    with caplog.at_level(logging.WARNING, logger="vae_lab"):
        data = ImageFolder(root, on_error="skip", **kwargs)
    [line] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert "left out 2 of 12 files" in line and "circles/broken.png, squares/cut.png" in line
    broken = [data.files.index(f) for f in ("circles/broken.png", "squares/cut.png")]
    positions = torch.cat([data.positions(s, torch.arange(data.size(s))) for s in ("train", "val", "test")])
    assert len(positions) == len(set(positions.tolist()) | set(broken)) - 2 == 10  # every readable file once, no other
    labels = torch.cat([data.labels(s, torch.arange(data.size(s))) for s in ("train", "val", "test")])
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 5
    streamed = ImageFolder(root, on_error="skip", resident=False, **kwargs)
    assert isinstance(streamed.images, np.memmap) and streamed.images.filename is not None  # the cache, not a copy
    for split in ("train", "val", "test"):
        index = torch.arange(streamed.size(split))
        assert torch.equal(streamed.positions(split, index), data.positions(split, index))
        assert torch.equal(streamed.batch(split, index), data.batch(split, index))
    decoded = len(count_decodes)
    with pytest.raises(ConfigError, match=r"broken\.png: cannot be decoded"):  # from the skip run's cache
        ImageFolder(root, on_error="stop", **kwargs)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vae_lab"):
        ImageFolder(root, on_error="skip", **kwargs)
    assert len(count_decodes) == decoded + 1 and any("left out 2" in r.getMessage() for r in caplog.records)


def test_a_folder_of_only_unreadable_files_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.png", "c.jpeg"):
        (tmp_path / "images" / name).write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"^path=.*: none of its 3 image files can be decoded, e\.g\. .*a\.jpg$"):
        ImageFolder(tmp_path / "images", val_size=1, test_size=1, data_dir=tmp_path / "data")


def _build(tmp_path, *overrides):
    cfg = compose_config(["dataset=image_folder", f"data_dir={tmp_path / 'data'}", *overrides])
    return build("dataset", cfg.dataset)


@pytest.mark.parametrize("override,message", [
    ("dataset.path={empty}", r"^dataset\.path=.*: holds no image \(\.png, \.jpg, \.jpeg"),
    ("dataset.path={file}", r"^dataset\.path=.*: is not a directory"),
    ("dataset.path={nowhere}", r"^dataset\.path=.*: does not exist"),
    ("dataset.channels=2", r"^dataset\.channels=2: must be 1 \(grey\) or 3 \(RGB\)$"),
    ("dataset.channels=true", r"^dataset\.channels=True: must be 1"),
    ("dataset.size=0", r"^dataset\.size=0: must be an integer >= 1 and <= 4096$"),
    ("dataset.size=99999999999999999999", r"^dataset\.size=99999999999999999999: must be an integer"),
    ("dataset.size=2.5", r"^dataset\.size=2\.5: must be an integer"),
    ("dataset.on_error=ignore", r"^dataset\.on_error='ignore': must be one of skip, stop$"),
    ("dataset.val_size=0", r"^dataset\.val_size=0: "),
    ("dataset.path=null", r"^dataset\.path=None: not set"),
])
def test_bad_keys_are_one_line(override, message, tmp_path, image_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    (tmp_path / "file.png").write_bytes(b"")
    override = override.format(empty=tmp_path / "empty", file=tmp_path / "file.png", nowhere=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=message) as e:
        _build(tmp_path, f"dataset.path={image_dir}", override)
    assert "\n" not in str(e.value)


def test_a_missing_path_is_one_line():
    with pytest.raises(ConfigError, match=r"^dataset\.path: missing"):
        check_root(compose_config(["dataset=image_folder"]))


@pytest.mark.slow
def test_trains_and_evaluates_two_thousand_images(tmp_path, capsys):
    root = write_image_folder(tmp_path / "images", 1000, size=32, seed=3)
    data_dir = tmp_path / "data"
    overrides = [*TINY[3:], "dataset=image_folder", f"dataset.path={root}", "dataset.size=32", "latent_dim=2",
                 f"data_dir={data_dir}"]
    start = time.perf_counter()
    run = trained_run(tmp_path / "run", overrides)
    assert run.summary["steps"] == 6 and time.perf_counter() - start < 120
    evaluate.main([f"run={run.dir}", "iwae.k=4", "max_images=200", "metrics=[]"])
    result = json.loads((run.dir / "eval.json").read_text())
    assert "figures/test_latent_scatter.png" in result["figures"]
    assert (run.dir / "figures" / "test_latent_scatter.png").stat().st_size > 1000
    start = time.perf_counter()
    data = build("dataset", compose_config(overrides).dataset)  # from the cache
    assert time.perf_counter() - start < 10 and data.shape == (3, 32, 32)
    assert set(data.labels("test", torch.arange(data.size("test"))).tolist()) == {0, 1}
