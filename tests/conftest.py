import gzip
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from vae_lab.config import CONFIG_DIR, register_resolvers

register_resolvers()  # as vae-train does before Hydra composes a config

# A few steps on a small slice of sprites: what every quick training test runs.
TINY = [
    "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "trainer.batch_size=32",
    "trainer.max_steps=6", "trainer.log_every=2", "trainer.eval_every=3", "trainer.checkpoint_every=3",
    "eval.max_images=64", "encoder.hidden=[32]", "decoder.hidden=[32]", "latent_dim=4",
]


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def options(group):
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def write_idx(path, array):
    """Write `array` (uint8) as a gzipped IDX file, the format (Fashion-)MNIST ships in."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture(scope="session")
def idx_data_dir(tmp_path_factory):
    """A data_dir holding small MNIST and FashionMNIST IDX files (random digits, 600 train / 100 test)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("MNIST", "FashionMNIST"):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 600), ("t10k", 100)):
            write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return root
