"""Fixtures shared by the tests; the helpers they use are in helpers.py."""
import pytest
from helpers import write_idx_dir


@pytest.fixture(scope="session")
def idx_data_dir(tmp_path_factory):
    """A data_dir holding small MNIST and FashionMNIST IDX files (random digits, 600 train / 100 test)."""
    return write_idx_dir(tmp_path_factory.mktemp("data"), 600, 100, seed=0)
