"""Any folder of PNG and JPEG images, found recursively, as a dataset: each image decoded once with Pillow, resized so
its short side is `size`, centre-cropped to size x size, and kept as uint8 in the decoded-image cache under
`data_dir` (vae_lab.data.cache), so a second run reads one .npy file instead of decoding again.

Labels come from the first-level sub-folders: with `root/cats/*.png` and `root/dogs/*.png`, cats are 0 and dogs 1
(sorted names, at any depth below them). Images directly in the root, next to such sub-folders, form one more class
of their own, the last one, named "." (so every image keeps a label and the sub-folders' labels do not depend on
them). A folder without sub-folders of images has no labels. Hidden files and folders (names starting with ".") are
left out.

A file that cannot be decoded is left out with `on_error=skip` (one warning line: the count and the first names) or
stops the run with `on_error=stop` (one line naming it). The cache holds a row for every file found (zeros for an
unreadable one), <data_dir>/cache/image_folder-<hash>.npy, and which of them decoded, image_folder-readable-<hash>.npy:
so a second run knows which files to leave out, and logs them again, without decoding anything. The splits hold the
readable rows' positions, so the images stay in the one memory-mapped cache whether or not some files failed.
"""
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from vae_lab.checks import ConfigError, choice, first_line, number
from vae_lab.data.base import IndexedImageData, seeded_splits, split_sizes
from vae_lab.data.cache import cached, file_key
from vae_lab.progress import bar

log = logging.getLogger("vae_lab")

EXTENSIONS = (".png", ".jpg", ".jpeg")  # matched in any case
ROOT_CLASS = "."  # the class of the images directly in the root when there are sub-folders too
MAX_SIZE = 4096  # pixels a side: past this a folder's images would not fit a device's memory anyway
NAMED = 3  # unreadable files named in the on_error=skip warning
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow's modes of a 16-bit grey PNG
ALPHA = ("RGBA", "LA", "PA", "La", "RGBa")


def find_images(root):
    """Paths of the PNG and JPEG files under `root`, relative to it and sorted; hidden files and folders left out."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f).relative_to(root) for f in files
                  if not f.startswith(".") and f.lower().endswith(EXTENSIONS)]
    return sorted(found, key=Path.as_posix)


def class_labels(relative):
    """(labels (N,) or None, class names): the index of each file's first-level sub-folder in the sorted names;
    files directly in the root get the last label, class ROOT_CLASS, when there are sub-folders, else no labels."""
    classes = sorted({r.parts[0] for r in relative if len(r.parts) > 1})
    if not classes:
        return None, ()
    if any(len(r.parts) == 1 for r in relative):
        classes.append(ROOT_CLASS)
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index[r.parts[0] if len(r.parts) > 1 else ROOT_CLASS] for r in relative]), tuple(classes)


def decode(path, size, channels):
    """The image of `path` as uint8 (channels, size, size): turned upright by its EXIF orientation, 16-bit levels
    scaled to 8 bits, transparent pixels composited on white, then grey (L) or RGB, its short side resized to
    `size` and its centre cropped."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.draft(None, (size, size))  # JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale when both sides stay >= size
        im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT:  # v / 257 maps 0..65535 onto 0..255 (65535 = 255 * 257): scaled, not clipped at 255
        levels = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(levels / 257), 0, 255).astype(np.uint8), "L")
    if im.mode in ALPHA or "transparency" in im.info:  # palette or grey/RGB with a transparent colour, or alpha
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    im = im.convert("L" if channels == 1 else "RGB")
    # One resampling of the centred square whose side is the short side: the same as resizing the short side to
    # `size` and cropping the centre. Lanczos because Pillow widens its kernel by the reduction factor, so a
    # downscale averages every source pixel (no aliasing, unlike a fixed-width kernel) while keeping edges sharper
    # than BOX's plain average; reducing_gap first box-reduces by an integer factor, which keeps large photos fast.
    w, h = im.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    im = im.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    pixels = np.asarray(im)  # (size, size) or (size, size, 3)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def unreadable(path, error):
    """The on_error=stop error for the file `path` that raised `error` (None: it failed in an earlier run)."""
    why = first_line(error, with_type=True) if error is not None else "it failed in an earlier run"
    return ConfigError(f"{path}: cannot be decoded as an image ({why}); replace or remove it, or set "
                       "dataset.on_error=skip to leave such files out")


def folder(path):
    """The directory `path` as an absolute Path; a ConfigError when it is not set or not a directory."""
    if path is None or not str(path).strip():
        raise ConfigError(f"path={path}: not set; give the folder of images, dataset.path=<folder>")
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        why = "is not a directory" if root.exists() else "does not exist"
        raise ConfigError(f"path={path}: {why}; give a folder of PNG or JPEG images (searched recursively)")
    return root.resolve()


class ImageFolder(IndexedImageData):
    """The PNG and JPEG images under `path`, found recursively; labels from the first-level sub-folders (module
    docstring); a split of `val_size` and `test_size` of the readable images (fractions or counts) drawn with
    `split_seed`; `seed` draws binarize=static's binarisation. `files` and `classes` name what each position and
    label came from; an unreadable file's position is in no split."""

    def __init__(self, path, size=64, channels=3, val_size=0.05, test_size=0.05, split_seed=0, on_error="skip",
                 data_dir="data", binarize="none", dequantize="none", resident="auto", memory_budget_gb=None,
                 memory_share=1.0, workers=2, seed=0, device="cpu"):
        size = int(number("size", size, low=1, high=MAX_SIZE, integer=True))
        if type(channels) is not int or channels not in (1, 3):
            raise ConfigError(f"channels={channels!r}: must be 1 (grey) or 3 (RGB)")
        on_error = choice("on_error", on_error, ("skip", "stop"))
        root = folder(path)
        relative = find_images(root)
        if not relative:
            raise ConfigError(f"path={path}: holds no image ({', '.join(EXTENSIONS)}, in any case, at any depth)")
        split_sizes(len(relative), val_size, test_size)  # a bad size fails now, not after decoding
        files = [root / r for r in relative]
        key = {"files": file_key(files), "size": size, "channels": channels}

        failed = None  # positions that fill() could not decode; None when the images came from the cache

        def fill(array):
            nonlocal failed
            failed, start = [], time.perf_counter()
            with bar(len(files), "decoding images", unit="image") as progress:
                for i, file in enumerate(files):
                    try:
                        array[i] = decode(file, size, channels)
                    except Exception as e:  # any failure of Pillow on one file: that file is unreadable
                        if on_error == "stop":
                            raise unreadable(file, e) from None
                        failed.append(i)
                    progress.update()
            log.info("dataset: decoded %d images in %.1f s", len(files) - len(failed), time.perf_counter() - start)

        def mark(readable):
            nonlocal failed
            if failed is None:  # the images were cached but this list was not: find the unreadable files again
                failed = [i for i, file in enumerate(files) if _fails(file, size, channels)]
            readable[:] = 1
            readable[failed] = 0

        images = cached(data_dir, "image_folder", key, (len(files), channels, size, size), fill)
        readable = cached(data_dir, "image_folder-readable", key, (len(files),), mark, quiet=True)
        keep = np.flatnonzero(readable)
        if len(keep) < len(files):
            bad = [files[i] for i in np.flatnonzero(readable == 0)]
            if on_error == "stop":  # the cache of an on_error=skip run: decode the file again for its error
                raise unreadable(bad[0], _fails(bad[0], size, channels))
            if not len(keep):
                raise ConfigError(f"path={path}: none of its {len(files)} image files can be decoded, e.g. {bad[0]}")
            names = ", ".join(p.relative_to(root).as_posix() for p in bad[:NAMED]) + (", ..." if len(bad) > NAMED else "")
            log.warning("dataset: on_error=skip: left out %d of %d files in %s that cannot be decoded: %s",
                        len(bad), len(files), root, names)
        labels, self.classes = class_labels([relative[i] for i in keep])
        self.files = tuple(r.as_posix() for r in relative)
        splits = None
        if len(keep) < len(files):  # the unreadable files' rows stay in the cache, in no split: no copy of the rest
            keep = torch.from_numpy(keep)
            splits = {k: keep[v] for k, v in seeded_splits(len(keep), val_size, test_size, split_seed).items()}
            if labels is not None:
                labels = torch.full((len(files),), -1, dtype=torch.long).index_copy_(0, keep, labels)
        super().__init__(images, labels=labels, splits=splits, val_size=val_size, test_size=test_size,
                         split_seed=split_seed, binarize=binarize, dequantize=dequantize, resident=resident,
                         memory_budget_gb=memory_budget_gb, memory_share=memory_share, workers=workers, seed=seed,
                         device=device)


def _fails(path, size, channels):
    """The exception decoding `path` raises, or None when it decodes."""
    try:
        decode(path, size, channels)
    except Exception as e:
        return e
    return None
