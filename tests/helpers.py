"""Helpers shared by the tests: composing configs, training a tiny run into a run directory, reading its
TensorBoard scalars, and writing small data sets in the real on-disk formats (IDX, CIFAR-10's binary batches, CelebA's
JPEGs and text files, factor-grid files, image folders). Test files import these (`from helpers import ...`), never
from conftest.py (which holds only fixtures and hooks) nor from each other."""
import gzip
import io
import math
import sys
import tarfile
import types
from pathlib import Path
from typing import NamedTuple

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_lab.data.npz import write_npz
from vae_lab.data.sprites import npz_latents
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


def write_cifar_dir(root, per_batch, seed, archive=False):
    """`root`/cifar-10-batches-bin/ holding the five training batches and test_batch.bin, `per_batch` random records
    each (a label byte 0-9, then 3,072 pixel bytes channel-major), or with `archive` only cifar-10-binary.tar.gz of
    it. Returns the images (N, 3, 32, 32) and labels (N,) in file order, training batches first."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (6 * per_batch, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch, dtype=np.uint8)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for i, name in enumerate(names):
        part = slice(i * per_batch, (i + 1) * per_batch)
        records = np.concatenate([labels[part, None], images[part].reshape(per_batch, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    if archive:
        with tarfile.open(Path(root) / "cifar-10-binary.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        for name in names:
            (folder / name).unlink()
        folder.rmdir()
    return images, labels.astype(np.int64)


CELEBA_ATTRIBUTES = tuple(f"Attribute_{k}" if k != 20 else "Male" for k in range(40))  # Male is the 21st in the release


def write_celeba_dir(root, n, seed):
    """A CelebA folder: n smooth random 178x218 JPEGs in img_align_celeba/ (000001.jpg, ...), list_eval_partition.txt
    (the first 60% train, the next 20% val, the rest test) and list_attr_celeba.txt (random 1/-1). Returns the image
    names, their split codes (n,) and their attributes (n, 40) as 0/1."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    codes = np.zeros(n, dtype=np.int64)
    codes[int(0.6 * n) : int(0.8 * n)], codes[int(0.8 * n) :] = 1, 2
    for name in names:  # a coarse random grid, enlarged: smooth enough for JPEG to keep it
        grid = rng.integers(0, 256, (11, 9, 3), dtype=np.uint8)
        Image.fromarray(grid).resize((178, 218), Image.Resampling.BILINEAR).save(root / "img_align_celeba" / name,
                                                                                quality=95)
    (root / "list_eval_partition.txt").write_text("".join(f"{a} {c}\n" for a, c in zip(names, codes)))
    attributes = rng.integers(0, 2, (n, 40))
    rows = "".join(name + "".join(f"{2 * v - 1:3d}" for v in row) + "\n" for name, row in zip(names, attributes))
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(CELEBA_ATTRIBUTES)}\n{rows}")
    return names, codes, attributes


# Small factor-grid files in the real formats (dSprites' npz, 3D Shapes' h5, MPI3D's npz), reduced grids.
DSPRITES_SIZES = (1, 3, 2, 4, 4, 4)  # color, shape, scale, orientation, posX, posY
SHAPES3D_SIZES = (2, 3, 2, 2, 2, 5)  # floor_hue, wall_hue, object_hue, scale, shape, orientation
MPI3D_SIZES = (2, 2, 2, 1, 3, 4, 5)  # object_color, object_shape, object_size, camera_height, background, axes
GRID_FILES = {"dsprites": "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", "shapes3d": "3dshapes.h5",
              "mpi3d": "mpi3d_toy.npz"}


def grid_overrides(root):
    """{option: overrides} that point each factor-grid option at its small file under `root` (write_grid_files)."""
    root = Path(root)
    return {"dsprites": [f"dataset.path={root / GRID_FILES['dsprites']}", "dataset.test_size=0.1"],
            "shapes3d": [f"dataset.path={root / GRID_FILES['shapes3d']}", "dataset.test_size=0.1"],
            "mpi3d": [f"dataset.path={root / GRID_FILES['mpi3d']}", "dataset.test_size=0.1",
                      f"dataset.factor_sizes=[{','.join(map(str, MPI3D_SIZES))}]"]}


def unloadable_pickle():
    """.npy bytes of a 0-d object array (as dSprites' `metadata`) holding an object of a class that exists nowhere
    once written: unpickling it raises ModuleNotFoundError, so a reader that loads it fails."""
    module = types.ModuleType("vae_lab_tests_vanished")

    class Vanished:
        pass

    Vanished.__module__, Vanished.__qualname__ = module.__name__, "Vanished"
    module.Vanished = Vanished
    sys.modules[module.__name__] = module
    try:
        array = np.empty((), dtype=object)
        array[()] = Vanished()
        out = io.BytesIO()
        np.lib.format.write_array(out, array, allow_pickle=True)  # a pickle on purpose
        return out.getvalue()
    finally:
        del sys.modules[module.__name__]


def sprites_images(classes):
    """uint8 0/1 images (n, 64, 64) that vae_lab's procedural sprites draws for dSprites' factor classes (n, 6)."""
    import torch

    from vae_lab.data.sprites import Sprites

    sprites = Sprites(val_size=1, test_size=1)
    return sprites.images_for_factors(torch.as_tensor(classes[:, 1:]))[:, 0].to(torch.uint8).numpy()


def write_dsprites_npz(path, sizes=DSPRITES_SIZES, metadata=True):
    """dSprites' npz format on a reduced grid: imgs (sprites' drawings), latents_classes, latents_values, and a
    `metadata` pickle that cannot be loaded."""
    classes, values = npz_latents(sizes)
    members = {"imgs": sprites_images(classes), "latents_classes": classes, "latents_values": values}
    if metadata:
        members["metadata"] = unloadable_pickle()
    return write_npz(path, members)


def write_shapes3d_h5(path, sizes=SHAPES3D_SIZES, seed=0):
    """3dshapes.h5's format on a reduced grid: random images (N, 64, 64, 3) and labels (N, 6) of its factor values."""
    import h5py

    classes = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1)
    tables = [np.linspace(0, 0.9, 10)] * 3 + [np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]
    labels = np.stack([tables[k][classes[:, k]] for k in range(6)], 1)
    images = np.random.default_rng(seed).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3))
        f.create_dataset("labels", data=labels)
    return Path(path)


def write_mpi3d_npz(path, sizes=MPI3D_SIZES, seed=0):
    """An MPI3D npz (np.savez, uncompressed) of random images (N, 64, 64, 3) on a reduced grid."""
    images = np.random.default_rng(seed).integers(0, 256, (math.prod(sizes), 64, 64, 3), dtype=np.uint8)
    return write_npz(path, {"images": images}, compress=False)


def write_grid_files(root):
    """GRID_FILES under `root`, each a small file in its option's real format."""
    root = Path(root)
    write_dsprites_npz(root / GRID_FILES["dsprites"])
    write_shapes3d_h5(root / GRID_FILES["shapes3d"])
    write_mpi3d_npz(root / GRID_FILES["mpi3d"])
    return root


def write_image_folder(root, per_class, size=32, seed=0, classes=("circles", "squares")):
    """A folder with a sub-folder of `per_class` RGB PNG images (size x size: dark noise and one bright shape, a disc
    or a square by class) for each name in `classes`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    for k, name in enumerate(classes):
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 64, (size, size, 3), dtype=np.uint8)
            (cx, cy), r = rng.integers(size // 4, 3 * size // 4, 2), rng.integers(size // 8, size // 4 + 1)
            shape = (x - cx) ** 2 + (y - cy) ** 2 <= r * r if k % 2 == 0 else (abs(x - cx) <= r) & (abs(y - cy) <= r)
            image[shape] = rng.integers(128, 256, 3)
            Image.fromarray(image).save(Path(root) / name / f"{i:05d}.png", compress_level=1)
    return Path(root)


# Options whose defaults are too big for a quick test, per group option: FactorVAE's 6 x 1000 discriminator.
SMALL = {"factor_vae": ["penalty.depth=2", "penalty.width=16"]}


def steps_for_every_penalty(root, steps):
    """{penalty option: the model's and penalty's state and the train/ sums} after `steps` training steps of a tiny run
    with that penalty, trained by this process and any others started with it (vae_lab.runtime.distributed): what
    test_distributed compares between two processes and one. The global batch of 30 images of a 255-image training
    set makes the epoch's last batch (15) split unevenly between two processes."""
    import torch

    from vae_lab.runtime import distributed
    from vae_lab.train import batches, setup, train_step

    team = distributed.join(torch.device("cpu"))
    out = {}
    try:
        for penalty in options("penalty"):
            cfg = compose_config([*TINY, f"penalty={penalty}", *SMALL.get(penalty, []), "dataset.train_size=255",
                                  "trainer.batch_size=30", f"trainer.max_steps={steps}", "trainer.epochs=2"])
            training = setup(cfg, Path(root) / penalty, team)
            for x in batches(training):
                train_step(training, x)
            training.state.guard.problem(training.state.step)
            team.average(training.state.means.sums)
            out[penalty] = {"model": training.state.model.state_dict(),
                            "penalty": {k: v for k, v in training.state.penalty.state_dict().items() if k != "_extra_state"},
                            "sums": training.state.means.sums.clone()}
    finally:
        distributed.leave()
    return out
