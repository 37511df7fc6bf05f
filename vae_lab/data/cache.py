"""Decode once: a dataset's images as one uint8 array (N, C, H, W) in a .npy file under `data_dir`/cache.

Decoding 200,000 JPEGs or reading an HDF5 file item by item takes minutes; reading a .npy file of the decoded bytes
takes seconds. The file's name holds a hash of what it was made from (`key`: the source files' names, sizes and
modification times, and the decoding settings), so a changed source is decoded again, and the cache lives under
`data_dir` because the users' data folders may be read-only. It is written to a temporary file and renamed when
complete: a run killed while decoding leaves no half-written cache.
"""
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from vae_lab.checks import ConfigError

log = logging.getLogger("vae_lab")


def path_for(data_dir, name, key):
    """<data_dir>/cache/<name>-<hash of key>.npy"""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(data_dir) / "cache" / f"{name}-{digest}.npy"


def file_key(paths):
    """What identifies source files: each one's path, size and modification time."""
    out = []
    for p in paths:
        stat = os.stat(p)
        out.append([str(p), stat.st_size, stat.st_mtime_ns])
    return out


def cached(data_dir, name, key, shape, fill):
    """The uint8 array of `shape` for `key`, read-only and memory-mapped: from the cache when it holds it, else made
    by fill(array), which writes every image of the writable memory-mapped array, then kept in the cache."""
    path = path_for(data_dir, name, key)
    if path.is_file():
        array = np.load(path, mmap_mode="r")
        if array.shape == tuple(shape) and array.dtype == np.uint8:
            log.info("dataset: decoded images from the cache %s", path)
            return array
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"data_dir={data_dir}: the decoded-image cache cannot be written there ({e.strerror}); set "
                          "data_dir to a writable folder") from None
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    log.info("dataset: decoding %d images once into %s", shape[0], path)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=tuple(shape))
        fill(array)
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    (path.with_suffix(".json")).write_text(json.dumps({"name": name, "shape": list(shape), "key": key}, default=str)[:100_000])
    return np.load(path, mmap_mode="r")
