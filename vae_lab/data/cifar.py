"""CIFAR-10 (Krizhevsky 2009) from its binary version, read here: no pickle is ever loaded.

cifar-10-binary.tar.gz holds cifar-10-batches-bin/ with data_batch_1.bin ... data_batch_5.bin (the 50,000 training
images) and test_batch.bin (the 10,000 test images). Each file is a run of 3,073-byte records: one label byte (0-9),
then the 32x32 image channel-major, 1,024 red bytes, 1,024 green, 1,024 blue, each channel row-major
(https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"), so a record's pixels are already (C, H, W).
"""
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from vae_lab.checks import ConfigError
from vae_lab.data.base import IndexedImageData, seeded_splits

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the md5sum column of the download table on the CIFAR page above
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32  # label byte + pixels
CLASSES = 10


class CIFAR10(IndexedImageData):
    """The 60,000 images in one uint8 array: the five training batches, `val_size` of them (a count or a fraction)
    held out as val, drawn with `split_seed`, and test_batch.bin as test; `seed` draws binarize=static's
    binarisation. `path` holds cifar-10-batches-bin/ or the .tar.gz (read without unpacking); with `download`, a
    folder holding neither gets the archive (MD5 checked) and unpacks it."""

    def __init__(self, path="data/cifar10", download=True, val_size=5000, split_seed=0, binarize="none",
                 dequantize="none", seed=0, device="cpu"):
        path = Path(path)
        if not ((path / FOLDER).is_dir() or (path / ARCHIVE).is_file()):
            if not download:
                raise ConfigError(f"path={path}: neither {FOLDER}/ nor {ARCHIVE} there; {_how_to_get(path)}, or set "
                                  "dataset.download=true")
            _download(path)
        raw, where = _read(path)
        records = {name: _records(where / name, data) for name, data in raw.items()}
        _check_lengths(where, records)
        train = np.concatenate([records[name] for name in TRAIN_FILES])  # (50000, 3073) in the release
        everything = np.concatenate([train, records[TEST_FILE]])
        images = np.ascontiguousarray(everything[:, 1:]).reshape(-1, *SHAPE)  # channel-major: already (C, H, W)
        splits = seeded_splits(len(train), val_size, None, split_seed)  # val and train, of the training batches
        splits["test"] = torch.arange(len(train), len(everything))
        super().__init__(torch.from_numpy(images), labels=torch.from_numpy(everything[:, 0].astype(np.int64)),
                         splits=splits, binarize=binarize, dequantize=dequantize, seed=seed, device=device)


def _how_to_get(path):
    return f"download {URL} (the binary version, https://www.cs.toronto.edu/~kriz/cifar.html) into {path}"


def _download(path):
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(path), md5=MD5)
    except Exception as e:  # no network, a proxy, a wrong MD5, disk full: one line with where the files go
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"path={path}: no CIFAR-10 files there and the download failed ({first}); "
                          f"{_how_to_get(path)}") from None


def _read(path):
    """({file name: bytes} of the six batches, the folder they are named under): from cifar-10-batches-bin/ when it
    is there, else from the archive's members without unpacking it."""
    names = (*TRAIN_FILES, TEST_FILE)
    folder = path / FOLDER
    if folder.is_dir():
        raw = {}
        for name in names:
            try:
                raw[name] = (folder / name).read_bytes()
            except OSError as e:
                raise ConfigError(f"{folder / name}: cannot be read ({e.strerror}); {_how_to_get(path)} and unpack "
                                  "it again") from None
        return raw, folder
    archive, raw = path / ARCHIVE, {}
    try:
        with tarfile.open(archive, "r|gz") as tar:  # a stream: each member read as the archive is unzipped, once
            for member in tar:
                folder_name, _, name = member.name.removeprefix("./").rpartition("/")
                if member.isfile() and folder_name == FOLDER and name in names:
                    raw[name] = tar.extractfile(member).read()
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise ConfigError(f"{archive}: cannot be read ({e}); delete it and download it again") from None
    missing = [name for name in names if name not in raw]
    if missing:
        raise ConfigError(f"{archive}: has no {FOLDER}/{missing[0]}, not CIFAR-10's binary version; "
                          f"{_how_to_get(path)}")
    return raw, archive / FOLDER


def _records(where, data):
    """(n, 3073) records of one batch file; a wrong size or a label outside 0-9 is a one-line error naming it."""
    if not data or len(data) % RECORD:
        raise ConfigError(f"{where}: {len(data):,} bytes, not a whole number of {RECORD:,}-byte records (a label byte "
                          "and 32x32x3 pixels): truncated or not a CIFAR-10 binary batch; replace it")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    bad = np.flatnonzero(records[:, 0] >= CLASSES)
    if len(bad):
        raise ConfigError(f"{where}: record {bad[0]} has label {records[bad[0], 0]}, CIFAR-10's are 0-9 (CIFAR-100's "
                          "binary version has two label bytes); replace it")
    return records


def _check_lengths(where, records):
    """The six files hold the same number of records (10,000 each in the release): a shorter one was cut at a record
    boundary."""
    counts = {name: len(records[name]) for name in (*TRAIN_FILES, TEST_FILE)}
    most = max(counts.values())
    short = [name for name, n in counts.items() if n < most]
    if short:
        raise ConfigError(f"{where / short[0]}: {counts[short[0]]:,} records where the other batch files hold "
                          f"{most:,}: truncated; replace it")
