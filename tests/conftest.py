"""Fixtures and hooks shared by the tests; the helpers they use are in helpers.py."""
import os
from pathlib import Path

import pytest
import torch
from helpers import (
    TINY,
    trained_run,
    write_celeba_dir,
    write_cifar_dir,
    write_grid_files,
    write_idx_dir,
    write_image_folder,
)

import vae_lab

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """The commands tests start (vae-train, python -m vae_lab.…) import the vae_lab these tests import: the
    repository's, also where an editable install of another checkout is on the path."""
    if Path(vae_lab.__file__).resolve().parent == ROOT / "vae_lab":
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tests' tensors are small: a second torch thread does not speed them up, and on shared cores its waiting
    costs more. (The commands tests start keep torch's default.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def idx_data_dir(tmp_path_factory):
    """A data_dir holding small MNIST and FashionMNIST IDX files (random digits, 600 train / 100 test)."""
    return write_idx_dir(tmp_path_factory.mktemp("data"), 600, 100, seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """helpers.TINY trained once for the session (a TrainedRun). Tests only read it; a test that writes into a run
    (vae-eval does) works on a copy."""
    return trained_run(tmp_path_factory.mktemp("tiny") / "run", TINY)


@pytest.fixture(scope="session")
def dataset_data_dir(tmp_path_factory):
    """A data_dir where every file-backed `dataset` option finds small files at its default path: MNIST and
    FashionMNIST IDX files (600 train / 100 test), cifar10/ (200 training records, 40 test) and celeba/ (30 JPEGs)."""
    root = write_idx_dir(tmp_path_factory.mktemp("data"), 600, 100, seed=0)
    write_cifar_dir(root / "cifar10", 40, seed=0)
    write_celeba_dir(root / "celeba", 30, seed=0)
    return root


@pytest.fixture(scope="session")
def grid_dir(tmp_path_factory):
    """A folder holding small dSprites, 3D Shapes and MPI3D files (GRID_FILES; grid_overrides points options at them)."""
    return write_grid_files(tmp_path_factory.mktemp("grids"))


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """A folder of 2 x 30 small PNG images in two sub-folders (labels 0 and 1)."""
    return write_image_folder(tmp_path_factory.mktemp("images"), 30, size=28, seed=0)
