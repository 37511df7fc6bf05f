"""Run directories written by the code before the package was laid out in measure/ and runtime/ (and before eval.json
dropped `mig`) still compare, evaluate and resume. tests/fixtures/runs_before_layout/ was made by that code:
`stopped` (trainer.max_steps=6, trainer.stop_at_step=3, then vae-eval) and `completed` (3 steps, kl.beta=2), their
TensorBoard events and PNGs left out to keep the files small."""
import json
import shutil
from pathlib import Path

import pytest
from helpers import TINY_EVAL, compose_config

from vae_lab import compare, evaluate, results
from vae_lab.rundir import Status
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
