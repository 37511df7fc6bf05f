"""Peak memory of building dataset=dsprites from a full-size dSprites file: it must stay under 1 GB.

  python scripts/dsprites_memory.py [--dir /tmp] [--stored] [--keep]

Writes a file in the format of DeepMind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz (deflated as that one is,
or stored as np.savez writes it with --stored: 3 GB on disk; 737,280 images
drawn by vae_lab's procedural sprites, latents_classes and latents_values as the real file's, no metadata) a chunk
at a time, builds DSprites from it in a fresh process and prints, as JSON, that process's peak resident set size
before and after the build and the build's time; then checks the factors and 2,000 images against sprites' and
deletes the file (unless --keep).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vae_lab.data.dsprites import FILE
from vae_lab.data.npz import write_npz
from vae_lab.data.sprites import GRID_SIZE, Sprites, npz_latents

CHUNK = 16384

BUILD = """
import json, sys, time
import torch
from vae_lab.data.dsprites import DSprites
from vae_lab.data.sprites import Sprites

def peak_mb():  # VmHWM, this process's peak RSS (Linux); getrusage's ru_maxrss would include the parent's, kept across exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

before = peak_mb()
start = time.perf_counter()
data = DSprites(sys.argv[1])
seconds = time.perf_counter() - start
peak = peak_mb()
sprites = Sprites(val_size=1, test_size=1)
assert data.factor_names == sprites.factor_names and data.factor_sizes == sprites.factor_sizes
factors = sprites.sample_factors(2000, torch.Generator().manual_seed(0))
same = bool(torch.equal(data.images_for_factors(factors), sprites.images_for_factors(factors)))
print(json.dumps({"peak_rss_mb_before_build": round(before), "peak_rss_mb": round(peak), "build_s": round(seconds, 1),
                  "held_mb": round(data.images.numel() / 2**20), "images": sum(data.size(s) for s in
                  ("train", "val", "test")), "same_images_as_sprites": same}))
"""


def write_file(path, compress):
    """A full-size dSprites-format npz, its images rendered and written CHUNK at a time."""
    classes, values = npz_latents()
    sprites = Sprites(val_size=1, test_size=1)

    def chunks():
        for start in range(0, GRID_SIZE, CHUNK):
            yield sprites.images_for_factors(torch.as_tensor(classes[start : start + CHUNK, 1:]))[:, 0].to(torch.uint8)

    write_npz(path, {"imgs": ((GRID_SIZE, 64, 64), np.uint8, chunks()), "latents_classes": classes,
                     "latents_values": values}, compress=compress)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the file (50 MB, 3 GB stored)")
    parser.add_argument("--stored", action="store_true", help="write the zip members uncompressed")
    parser.add_argument("--keep", action="store_true", help="keep the file")
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(dir=args.dir)) / FILE
    try:
        start = time.perf_counter()
        write_file(path, compress=not args.stored)
        written = {"file_mb": round(path.stat().st_size / 2**20), "write_s": round(time.perf_counter() - start, 1)}
        out = subprocess.run([sys.executable, "-c", BUILD, str(path)], capture_output=True, text=True, check=True)
        print(json.dumps({**written, **json.loads(out.stdout)}))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            path.parent.rmdir()


if __name__ == "__main__":
    main()
