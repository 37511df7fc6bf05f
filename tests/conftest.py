"""Fixtures and hooks shared by the tests; the helpers they use are in helpers.py."""
import os
from pathlib import Path

import pytest
from helpers import write_idx_dir

import vae_lab

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """The commands tests start (vae-train, python -m vae_lab.…) import the vae_lab these tests import: the
    repository's, also where an editable install of another checkout is on the path."""
    if Path(vae_lab.__file__).resolve().parent == ROOT / "vae_lab":
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def idx_data_dir(tmp_path_factory):
    """A data_dir holding small MNIST and FashionMNIST IDX files (random digits, 600 train / 100 test)."""
    return write_idx_dir(tmp_path_factory.mktemp("data"), 600, 100, seed=0)
