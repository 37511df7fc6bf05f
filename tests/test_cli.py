"""The `vae-train` command as a user runs it: output, exit codes, and one-line errors for bad input."""
import subprocess
import sys

import pytest
from helpers import TINY, compose_config

from vae_lab.checks import ConfigError
from vae_lab.likelihoods import Bernoulli, Gaussian
from vae_lab.train import train


def run(args, tmp_path, command=("vae-train",)):
    return subprocess.run([*command, *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("command", [("vae-train",), (sys.executable, "-m", "vae_lab.train")])
def test_command_trains_and_reports(command, tmp_path):
    out = run(TINY, tmp_path, command)
    assert out.returncode == 0, out.stderr
    assert "run directory:" in out.stdout and "validation: elbo" in out.stdout
    assert (tmp_path / "run" / "summary.json").is_file()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert "torch threads:" in (tmp_path / "run" / "train.log").read_text()  # named train.log by either entry


@pytest.mark.slow
@pytest.mark.parametrize("override,key", [("latent_dim=0", "latent_dim=0"), ("kl.beta=-1", "kl.beta=-1")])
def test_bad_value_exits_with_one_line(override, key, tmp_path):
    out = run([*TINY, override], tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if "error" in l]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_unknown_option_lists_the_options(tmp_path):
    out = run(["dataset=imagenet"], tmp_path)
    assert out.returncode != 0 and "sprites" in out.stderr and "fashion_mnist" in out.stderr


@pytest.mark.parametrize("override,message", [
    ("likelihood=gaussian likelihood.sigma=0", "likelihood.sigma=0: must be a number > 0"),
    ("likelihood=laplace likelihood.learn_sigma=diag", "likelihood.learn_sigma='diag': must be one of none, scalar, pixel"),
    ("encoder=conv encoder.hidden=[8,8,8,8,8,8,8]", "encoder.hidden=[8, 8, 8, 8, 8, 8, 8]: 7 stride-2 conv layers do not fit 64x64"),
    ("encoder.hidden=[512,0]", "encoder.hidden=[512, 0]: entries must be positive integers"),
    ("decoder=conv decoder.hidden=[]", "decoder.hidden=[]: must be a list of positive integers with at least one entry"),
    ("kl=cyclical kl.ratio=0", "kl.ratio=0: must be a number > 0"),
    ("kl.beta=nan", "kl.beta=nan: must be a number >= 0"),
    ("kl.beta=abc", "kl.beta='abc': must be a number >= 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
    ("loss.reduction=median", "loss.reduction='median': must be one of sum, mean"),
    ("dataset.binarize=yes", "dataset.binarize='yes': must be one of none, static, dynamic"),
])
def test_bad_values_name_their_key(override, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        train(compose_config([*TINY, *override.split()]), tmp_path)
    assert str(e.value).startswith(message), str(e.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("override", ["trainer.batch_size=32.0", "eval.batch_size=1e39"])
def test_integer_valued_floats_train_or_are_refused_in_one_line(override, tmp_path):
    """Found by test_properties (Hypothesis draws 1e39): either such a value works as the integer, or it is refused."""
    try:
        summary = train(compose_config([*TINY, override, "trainer.max_steps=1"]), tmp_path / "run")
    except ConfigError as e:
        assert str(e).startswith(override.split("=")[0]) and "\n" not in str(e)
    else:
        assert summary["status"] == "completed"


def test_missing_data_names_the_directory(tmp_path):
    cfg = compose_config(["dataset=mnist", f"data_dir={tmp_path / 'nowhere'}", "dataset.download=false"])
    with pytest.raises(ConfigError, match=r"no MNIST files in .*nowhere/MNIST/raw.*put the four IDX files"):
        train(cfg, tmp_path / "run")


def test_corrupt_data_file_names_the_file(tmp_path, idx_data_dir):
    import shutil

    shutil.copytree(idx_data_dir, tmp_path / "data")
    bad = tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])
    cfg = compose_config(["dataset=mnist", f"data_dir={tmp_path / 'data'}", "dataset.val_size=100"])
    with pytest.raises(ConfigError, match="t10k-images-idx3-ubyte.gz"):
        train(cfg, tmp_path / "run")


def test_likelihood_refuses_data_outside_its_support():
    with pytest.raises(ConfigError, match=r"Bernoulli is defined on data in \[0.0, 1.0\]"):
        Bernoulli((1, 2, 2)).check_data(-1.0, 1.0)
    Gaussian((1, 2, 2)).check_data(-1.0, 1.0)
