"""Reader for the IDX format (Fashion-)MNIST ship in, gzipped or not; a damaged file is a one-line error."""
import gzip
import zlib
from pathlib import Path

import numpy as np

from vae_lab.checks import ConfigError


def read_idx(path):
    """uint8 array with the shape in the file's header."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ConfigError(f"{path}: cannot be read ({e}); delete it to download again, or replace it") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ConfigError(f"{path}: not an IDX file of unsigned bytes (bad header); delete or replace it")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise ConfigError(f"{path}: truncated or damaged ({len(raw) - start} bytes of data, header says "
                          f"{int(np.prod(dims))}); delete it to download again, or replace it")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=start).reshape(dims)  # writable: torch shares it
