"""Run directories written by the code before the package was laid out in measure/ and runtime/ (and before eval.json
dropped `mig`) still compare, evaluate and resume. tests/fixtures/runs_before_layout/ was made by that code:
`stopped` (trainer.max_steps=6, trainer.stop_at_step=3, then vae-eval) and `completed` (3 steps, kl.beta=2), their
TensorBoard events and PNGs left out to keep the files small."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY_EVAL, compose_config, write_run_config
from omegaconf import OmegaConf

from vae_lab import compare, evaluate, results, rundir
from vae_lab.data.sprites import Sprites
from vae_lab.rundir import Status
from vae_lab.runtime.build import build
from vae_lab.runtime.resume import resume_target
from vae_lab.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "runs_before_layout"


@pytest.fixture
def old_runs(tmp_path):
    return Path(shutil.copytree(FIXTURE, tmp_path / "runs"))


def test_they_compare_with_renamed_keys_read_under_their_new_names(old_runs, capsys):
    compare.main([str(old_runs), "--no-plots", "--sort", "status"])
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:4] == ["trainer.max_steps", "kl.beta", "trainer.stop_at_step", "status"]
    assert "val/mig_dlib" in header and "eval/mig_dlib" in header
    assert "val/mig" not in header and "eval/mig" not in header
    assert lines[-1] == "2 runs: 1 completed, 1 stopped"
    completed = json.loads((old_runs / "completed" / "summary.json").read_text())
    assert "mig" in completed and "mig_dlib" not in completed  # written by the old code
    assert results.upgrade(completed)["mig_dlib"] == completed["mig"]
    stopped_eval = json.loads((old_runs / "stopped" / "eval.json").read_text())
    assert results.upgrade(stopped_eval)["mig_dlib"] == stopped_eval["mig_dlib"]  # the metric's, not measure()'s


def test_they_evaluate_into_todays_eval_json(old_runs, capsys):
    evaluate.main([f"run={old_runs / 'stopped'}", *TINY_EVAL, "pictures=false"])
    result = json.loads((old_runs / "stopped" / "eval.json").read_text())
    assert result["step"] == 3 and "mig" not in result and "mig_dlib" in result
    assert set(result) <= {*results.KEYS, "sap"}


def test_they_resume_to_the_end(old_runs):
    run_dir = old_runs / "stopped"
    cfg, where = resume_target(compose_config([f"resume={run_dir}"]), old_runs / "new", [f"resume={run_dir}"], [])
    assert where == run_dir
    summary = train(cfg, where)
    assert summary["status"] == Status.COMPLETED and summary["steps"] == 6
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [3, 6]
    assert "mig" in lines[0] and "mig_dlib" in lines[1]  # the old line kept as written, the new one in today's keys


def _with_seed(run_dir, seed):
    """The run's saved config with `seed` in place of its 0: a run of another seed, saved before dataset.split_seed."""
    config = run_dir / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "split_seed" not in text and "\nseed: 0\n" in text
    config.write_text(text.replace("\nseed: 0\n", f"\nseed: {seed}\n"))
    return run_dir


def test_a_run_saved_before_split_seed_keeps_the_split_its_seed_drew(old_runs, monkeypatch):
    """dataset.seed drew the split before dataset.split_seed did: vae-eval scores such a run on its own test images
    and resume= continues it on its own training images, not on split_seed 0's."""
    run_dir = _with_seed(old_runs / "stopped", 1)
    drawn = Sprites(val_size=64, test_size=64, train_size=256, split_seed=1)
    built = []
    monkeypatch.setattr(evaluate, "build", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    evaluate.main([f"run={run_dir}", *TINY_EVAL, "pictures=false"])
    data = built[0]
    for split in ("train", "val", "test"):
        assert torch.equal(data.grid_index(split, torch.arange(data.size(split))), drawn._index[split]), split
    cfg, _ = resume_target(compose_config([f"resume={run_dir}"]), old_runs / "new", [f"resume={run_dir}"], [])
    assert OmegaConf.select(cfg, "dataset.split_seed") == 1
    assert "split_seed" not in (run_dir / ".hydra" / "config.yaml").read_text()  # read so, never rewritten


def test_resume_auto_still_finds_a_run_saved_before_split_seed(old_runs):
    """Today's config of the same command holds dataset.split_seed=0, which the old run's seed 0 drew its split with."""
    overrides = OmegaConf.load(old_runs / "stopped" / ".hydra" / "overrides.yaml")
    cfg, where = resume_target(compose_config([*overrides, "resume=auto"]), old_runs / "new", [], [old_runs])
    assert where == old_runs / "stopped" and cfg.dataset.split_seed == 0


@pytest.mark.parametrize("target", ["vae_lab.data.celeba.CelebA", "my_ext.nowhere.Bars"])
def test_a_dataset_without_split_seed_is_read_without_one(tmp_path, target):
    """CelebA's split is its official partition, an extension's dataset may have no split_seed, and a _target_ that
    does not import is for building the dataset to report: none of them is given the key."""
    run_dir = write_run_config(tmp_path / "run", {"seed": 1, "dataset": {"_target_": target, "seed": "${seed}"}})
    assert "split_seed" not in rundir.config(run_dir).dataset
