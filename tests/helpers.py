"""Helpers shared by the tests: composing configs, training a tiny run into a run directory, reading its
TensorBoard scalars, and writing small IDX data sets. Test files import these (`from helpers import ...`), never
from conftest.py (which holds only fixtures and hooks) nor from each other."""
import gzip
from pathlib import Path
from typing import NamedTuple

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_lab.runtime.config import CONFIG_DIR, register_resolvers

register_resolvers()  # as vae-train does before Hydra composes a config

# A few steps on a small slice of sprites: what every quick training test runs.
TINY = [
    "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "trainer.batch_size=32",
    "trainer.max_steps=6", "trainer.log_every=2", "trainer.eval_every=3", "trainer.checkpoint_every=3",
    "eval.max_images=64", "encoder.hidden=[32]", "decoder.hidden=[32]", "latent_dim=4",
]
# vae-eval options for a quick evaluation of such a run, and the figures every evaluation draws.
# vae-eval in seconds: the two quickest disentanglement metrics (test_evaluate runs all of them once, on small samples)
TINY_EVAL = ["iwae.k=4", "max_images=48", "metrics=[mig_dlib,sap]", "metric_sizes={mig_dlib:{n:500},sap:{n_train:300,n_test:200}}"]
EVAL_FIGURES = {"reconstructions", "prior_samples", "traversals", "kl_per_dim"}


def compose_config(overrides=(), return_hydra_config=False):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def options(group):
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


class TrainedRun(NamedTuple):
    dir: Path
    cfg: DictConfig  # the composed config it was trained with (without the hydra node)
    summary: dict  # what train() returned


def write_run_config(run_dir, config, overrides=(), choices=None):
    """The .hydra/ files vae-train writes before it trains: config.yaml (the composed config), overrides.yaml (the
    command line) and hydra.yaml (here only hydra.runtime.choices, the option picked in each group)."""
    hydra_dir = Path(run_dir) / ".hydra"
    hydra_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": dict(choices or {})}}}), hydra_dir / "hydra.yaml")
    return Path(run_dir)


def trained_run(run_dir, overrides):
    """A run directory as `vae-train <overrides> hydra.run.dir=<run_dir>` leaves it, trained in this process."""
    from vae_lab.train import train

    cfg = compose_config(overrides, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    write_run_config(run_dir, cfg, overrides, choices)
    return TrainedRun(Path(run_dir), cfg, train(cfg, Path(run_dir)))


def scalars(run_dir):
    """{tag: [(step, value), ...]} of every TensorBoard scalar in a run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def write_idx(path, array):
    """Write `array` (uint8) as a gzipped IDX file, the format (Fashion-)MNIST ships in."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_idx_dir(root, n_train, n_test, seed):
    """A data_dir holding MNIST and FashionMNIST IDX files of random digits and labels."""
    rng = np.random.default_rng(seed)
    for name in ("MNIST", "FashionMNIST"):
        raw = Path(root) / name / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return Path(root)
