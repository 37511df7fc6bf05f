"""CelebA (Liu et al. 2015), the aligned JPEGs: each image's centre crop shrunk to `size`, decoded once into the uint8
cache; the official train/val/test partition; the 40 binary attributes.

The files, all in `path` (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html):
  img_align_celeba/000001.jpg ... 202599.jpg  178x218 (W x H), faces aligned by the eyes
  list_eval_partition.txt  `000001.jpg 0` a line: 0 train (162,770 images), 1 val (19,867), 2 test (19,962)
  list_attr_celeba.txt     line 1 the image count, line 2 the 40 attribute names, then `000001.jpg -1  1 ...` a line
"""
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vae_lab.checks import ConfigError, first_line, positive_int
from vae_lab.data.base import SPLITS, IndexedImageData
from vae_lab.data.cache import cached, file_key
from vae_lab.progress import bar

IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
ATTRIBUTES = "list_attr_celeba.txt"
PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# Box filter: each output pixel is the area-weighted mean of the crop's pixels it covers (148 -> 64 is 2.3 pixels a
# side), so no value overshoots its neighbours; a windowed sinc (LANCZOS) rings at edges and clips at 0 and 255.
RESAMPLE = Image.Resampling.BOX
_CHUNK = 1024  # images handed to the decoding threads at a time


class CelebA(IndexedImageData):
    """Every image listed in list_eval_partition.txt, in its order, split as it says. The crop is the centre
    `crop` x `crop` square, top-left corner at ((W - crop) // 2, (H - crop) // 2), shrunk to `size` x `size`.
    `attributes(split, index)` gives the 40 attributes as 0/1 (`attribute_names`); `labels` gives the one named
    `label_attribute` (0/1: the two colours of the latent scatter plot), or None when it is null."""

    def __init__(self, path="data/celeba", data_dir="data", size=64, crop=148, label_attribute="Male", download=False,
                 binarize="none", dequantize="none", resident="auto", memory_budget_gb=None, memory_share=1.0, workers=2,
                 seed=0, device="cpu"):
        path = Path(path).expanduser().resolve()
        size, crop = positive_int("size", size), positive_int("crop", crop)
        if size > crop:
            raise ConfigError(f"size={size}: larger than crop={crop}; the crop is shrunk to `size`, never enlarged")
        if _missing(path) and download:
            _download(path)
        if _missing(path):
            raise ConfigError(f"path={path}: no {', '.join(_missing(path))} there; get {IMAGES}.zip (the aligned "
                              f"JPEGs), {PARTITION} and {ATTRIBUTES} from {PAGE} and unzip the images into {path}"
                              + ("" if download else " (dataset.download=true tries Google Drive: needs gdown, and "
                                 "it is often over its quota)"))
        names, codes = _read_partition(path / PARTITION)
        self.attribute_names, table = _read_attributes(path / ATTRIBUTES, names)
        if label_attribute is not None and label_attribute not in self.attribute_names:
            raise ConfigError(f"label_attribute={label_attribute!r}: not an attribute of {ATTRIBUTES}; one of "
                              f"{', '.join(self.attribute_names)}, or null")
        splits = {}
        for code, split in enumerate(SPLITS):  # 0 train, 1 val, 2 test
            splits[split] = np.flatnonzero(codes == code)
            if not len(splits[split]):
                raise ConfigError(f"{path / PARTITION}: no image in the {split} split ({code}); replace it")
        folder = str(path / IMAGES)
        files = [os.path.join(folder, name) for name in names]  # strings: 200,000 Path objects take seconds
        try:
            images_key = file_key(files)  # also how a listed image that is not there is found before decoding
        except FileNotFoundError as e:
            raise ConfigError(f"{e.filename}: listed in {PARTITION} but missing; unzip {IMAGES}.zip from {PAGE} into "
                              f"{path} again") from None
        except OSError as e:
            raise ConfigError(f"{e.filename}: cannot be read ({e.strerror})") from None
        key = {"partition": file_key([path / PARTITION]), "images": images_key, "crop": crop, "size": size,
               "resample": RESAMPLE.name}
        array = cached(data_dir, "celeba", key, (len(files), 3, size, size), lambda out: _decode(files, crop, size, out))
        labels = None if label_attribute is None else table[:, self.attribute_names.index(label_attribute)]
        super().__init__(array, labels=labels, splits=splits, binarize=binarize, dequantize=dequantize,
                         resident=resident, memory_budget_gb=memory_budget_gb, memory_share=memory_share, workers=workers,
                         seed=seed, device=device)
        self._attributes = torch.from_numpy(table).to(self.device)

    def attributes(self, split, index):
        """The attributes (B, 40) of the split's items `index`: 1 where list_attr_celeba.txt says 1, 0 for -1."""
        return self._attributes[self.positions(split, index)].long()


def crop_resize(file, crop, size):
    """The image's centre `crop` x `crop` square shrunk to `size` x `size`, (3, size, size) uint8 RGB."""
    try:
        with Image.open(file) as im:
            rgb = im.convert("RGB")  # decodes the whole file: a damaged one fails here
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{file}: not a readable JPEG ({first_line(e)}); replace it") from None
    w, h = rgb.size
    if min(w, h) < crop:
        raise ConfigError(f"{file}: {w}x{h} pixels, smaller than crop={crop}; set dataset.crop to at most {min(w, h)}")
    left, top = (w - crop) // 2, (h - crop) // 2
    small = rgb.resize((size, size), RESAMPLE, box=(left, top, left + crop, top + crop))
    return np.asarray(small).transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


def _decode(files, crop, size, out):
    """Fill `out` (N, 3, size, size) from the files, in threads: Pillow lets go of the GIL while it decodes."""

    def one(i):
        out[i] = crop_resize(files[i], crop, size)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool, bar(len(files), "celeba: decoding", "image") as b:
        for start in range(0, len(files), _CHUNK):
            chunk = range(start, min(start + _CHUNK, len(files)))
            for _ in pool.map(one, chunk):  # the first failure is raised here
                pass
            b.update(len(chunk))


def _missing(path):
    wanted = ((IMAGES, Path.is_dir), (PARTITION, Path.is_file), (ATTRIBUTES, Path.is_file))
    return [f"{name}/" if is_there is Path.is_dir else name for name, is_there in wanted if not is_there(path / name)]


def _download(path):
    """The three files from CelebA's Google Drive (ids and MD5s from torchvision's CelebA), the images unzipped."""
    from torchvision.datasets import CelebA as TorchvisionCelebA
    from torchvision.datasets.utils import download_file_from_google_drive, extract_archive

    wanted = (f"{IMAGES}.zip", PARTITION, ATTRIBUTES)
    try:
        for file_id, md5, name in TorchvisionCelebA.file_list:
            if name in wanted:
                download_file_from_google_drive(file_id, str(path), name, md5)
        if not (path / IMAGES).is_dir():
            extract_archive(str(path / f"{IMAGES}.zip"))
    except Exception as e:  # no gdown, no network, Drive's quota, a wrong MD5: one line with where to get them
        raise ConfigError(f"path={path}: the download from Google Drive failed ({first_line(e)}); get {IMAGES}.zip, "
                          f"{PARTITION} and {ATTRIBUTES} from {PAGE} and unzip the images into {path}") from None


def _lines(file):
    """(line number, line) of the text file's non-blank lines."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: cannot be read as text ({first_line(e)}); replace it") from None
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read_partition(file):
    """(image names, (N,) split codes 0/1/2), in the file's order."""
    names, codes = [], []
    for number, line in _lines(file):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ConfigError(f"{file}, line {number}: {line.strip()[:60]!r} is not `<image> <0|1|2>`; replace it")
        names.append(parts[0])
        codes.append(int(parts[1]))
    if not names:
        raise ConfigError(f"{file}: lists no image; replace it")
    return names, np.array(codes)


def _read_attributes(file, names):
    """(the attribute names, (N, K) uint8 table for the images `names`): 1 for `1`, 0 for `-1`."""
    lines = _lines(file)
    if len(lines) < 2 or not lines[0][1].strip().isdigit():
        raise ConfigError(f"{file}: line 1 must be the image count and line 2 the attribute names; replace it")
    count, attribute_names, rows = int(lines[0][1]), tuple(lines[1][1].split()), lines[2:]
    if count != len(rows):
        raise ConfigError(f"{file}: line 1 says {count} images, {len(rows)} lines follow the names; replace it")
    heads = [line.split(None, 1) for _, line in rows]
    with warnings.catch_warnings():  # a token that is no number ends the parse early: the count below catches it
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(" ".join(h[1] if len(h) > 1 else "" for h in heads), dtype=np.int8, sep=" ")
    k = len(attribute_names)
    if values.size != count * k or not np.isin(values, (-1, 1)).all():
        for (number, _), head in zip(rows, heads):  # find the first bad line to name it
            tokens = head[1].split() if len(head) > 1 else []
            if len(tokens) != k or not set(tokens) <= {"1", "-1"}:
                raise ConfigError(f"{file}, line {number}: {len(tokens)} values where line 2 names {k} attributes, "
                                  "each 1 or -1; replace it")
        raise ConfigError(f"{file}: values other than 1 and -1; replace it")
    table = (values.reshape(count, k) == 1).astype(np.uint8)
    listed = [h[0] for h in heads]
    if listed != names:  # the release lists the images in the partition file's order; any order is read
        row = {name: i for i, name in enumerate(listed)}
        absent = next((name for name in names if name not in row), None)
        if absent is not None:
            raise ConfigError(f"{file}: no line for {absent}, which {PARTITION} lists; replace it")
        table = table[[row[name] for name in names]]
    return attribute_names, table
