"""Arrays of a NumPy .npz file, read rows at a time and never unpickled.

An .npz file is a zip of .npy files. np.load(...)["imgs"] materialises the whole array (3 GB for dSprites, 12.7 GB
for MPI3D) and would unpickle an object array (dSprites' `metadata`) if allowed to; here the member is streamed out
of the zip (stored or deflated alike), its .npy header parsed with numpy.lib.format, its dtype and shape checked, and
its rows read a chunk at a time. Every fault (a missing file or key, another shape or dtype, a truncated or damaged
file) is one ConfigError naming the file and what was expected. `write_npz` writes such a file a chunk at a time
(tests, scripts/dsprites_memory.py).
"""
import contextlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vae_lab.checks import ConfigError

_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _describe(dtypes, row_shape):
    return f"(N, {', '.join(map(str, row_shape))}) {' or '.join(np.dtype(d).name for d in dtypes)}"


@contextlib.contextmanager
def npz_rows(path, key, dtypes, row_shape, expected):
    """(n, read) for the array `key` of the .npz file `path`, which must be (n, *row_shape) of one of `dtypes`, in C
    order: read(count) returns the next `count` rows as a read-only array. `expected` says which file was expected
    (its name, where it comes from), for the error messages."""
    path = Path(path)
    dtypes = tuple(np.dtype(d) for d in dtypes)
    want = f"expected {expected}, with `{key}` {_describe(dtypes, row_shape)}"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; {want}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a complete .npz (zip) file ({e}); {want}") from None
    with archive:
        names = [n.removesuffix(".npy") for n in archive.namelist()]
        if key not in names:
            raise ConfigError(f"{path}: no array `{key}` (it holds {', '.join(names) or 'nothing'}); {want}")
        try:
            member = archive.open(f"{key}.npy")
            version = np.lib.format.read_magic(member)
            if version not in _HEADERS:
                raise ValueError(f".npy format version {version}")
            shape, fortran, dtype = _HEADERS[version](member)
        except (ValueError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise ConfigError(f"{path}: `{key}` is not a readable .npy array ({e}); {want}") from None
        with member:
            if dtype not in dtypes or len(shape) != 1 + len(row_shape) or tuple(shape[1:]) != tuple(row_shape) \
                    or fortran:
                order = ", Fortran order" if fortran else ""
                raise ConfigError(f"{path}: `{key}` is {tuple(shape)} {dtype}{order}; {want}")
            n, row_bytes, done = shape[0], dtype.itemsize * int(np.prod(row_shape)), 0

            def read(count):
                nonlocal done
                count = min(count, n - done)
                try:
                    raw = member.read(count * row_bytes)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                    raw, why = b"", f" ({e})"
                else:
                    why = ""
                if len(raw) != count * row_bytes:
                    raise ConfigError(f"{path}: `{key}` ends after {done + len(raw) // row_bytes} of its {n} rows{why}: "
                                      f"the file is truncated or damaged; {want}")
                done += count
                return np.frombuffer(raw, dtype=dtype).reshape(count, *row_shape)

            yield n, read


def read_npz_array(path, key, dtypes, row_shape, expected):
    """The whole array `key` of the .npz file `path`, checked as npz_rows checks it: for the small arrays."""
    with npz_rows(path, key, dtypes, row_shape, expected) as (n, read):
        return read(n)


def write_npz(path, members, compress=True):
    """An .npz file as np.savez (compress=False) or np.savez_compressed writes it, member by member: each value an
    array, the raw bytes of a .npy file, or (shape, dtype, chunks) with the rows given as an iterable of arrays (a file
    too big to hold in memory)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method, allowZip64=True, compresslevel=1 if compress else None) as archive:
        for key, value in members.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                if isinstance(value, bytes):
                    f.write(value)
                elif isinstance(value, tuple):
                    shape, dtype, chunks = value
                    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                             "fortran_order": False, "shape": tuple(shape)})
                    for chunk in chunks:
                        f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
                else:
                    np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    return Path(path)
