"""vae-eval on runs trained for a few steps: eval.json, TensorBoard test/ entries, figures; one-line errors."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import EVAL_FIGURES, TINY, TINY_EVAL, trained_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lab import evaluate, results
from vae_lab.runtime.config import CONFIG_DIR

# every key of eval.json that applies to a sprites run (factors, IWAE on, factorised prior); mig_dlib and sap are the
# two metrics of TINY_EVAL
OPTIONAL = {"decomposition_note", "mig_dlib_per_factor", "disentanglement_sampled", "metrics_note", "udr_detail"}
KEYS = {*results.MEASURED, *(k.name for k in results.EVALUATION)} - OPTIONAL | {"sap"}


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    """A copy of the session's tiny run: these tests write eval.json, figures and events into it."""
    return Path(shutil.copytree(tiny_run.dir, tmp_path_factory.mktemp("run") / "run"))


def _snapshot(path):
    return {p: p.stat().st_mtime_ns for p in path.rglob("*")}


def test_writes_eval_json_figures_and_tensorboard(run_dir, capsys):
    evaluate.main([f"run={run_dir}", *TINY_EVAL])
    out = capsys.readouterr().out
    assert "collapse" in out and "iwae_nll (k=4, 48 images)" in out and "mig_dlib" in out
    result = json.loads((run_dir / "eval.json").read_text())
    assert set(result) == KEYS  # every key defined in vae_lab.results, and no other
    assert result["images"] == 48 and result["step"] == 6 and result["checkpoint"] == "last.pt"
    assert result["iwae_nll"] <= -result["elbo"]
    assert result["collapse"] in ("ok", "partial", "collapsed")
    assert set(result["disentanglement"]["mig_dlib"]["per_factor"]) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert [j for j, _ in result["kl_per_dim_sorted"]] == sorted(range(4), key=lambda j: -result["kl_per_dim"][j])
    assert {f"figures/test_{n}.png" for n in EVAL_FIGURES} == set(result["figures"])
    for f in result["figures"]:
        assert (run_dir / f).stat().st_size > 1000, f
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    for tag in ("test/elbo", "test/iwae_nll", "test/index_code_mi", "test/total_correlation", "test/active_units"):
        assert tag in acc.Tags()["scalars"], tag
    assert {f"test/{n}" for n in EVAL_FIGURES} <= set(acc.Tags()["images"])
    assert not (run_dir / "eval.json.tmp").exists()


def test_best_checkpoint_and_no_iwae(run_dir, capsys):
    evaluate.main([f"run={run_dir}", "checkpoint=best", "iwae.k=0", "max_images=16", "pictures=false", "metrics=[]"])
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["checkpoint"] == "best.pt" and "iwae_nll" not in result and result["figures"] == []


@pytest.mark.slow
def test_two_latent_dimensions_draw_the_manifold_and_scatter(tmp_path, capsys):
    run = trained_run(tmp_path / "run", [*TINY, "latent_dim=2"]).dir
    evaluate.main([f"run={run}", *TINY_EVAL])
    figures = json.loads((run / "eval.json").read_text())["figures"]
    assert set(figures) == {f"figures/test_{n}.png" for n in (*EVAL_FIGURES, "manifold", "latent_scatter")}
    for name in ("manifold", "latent_scatter"):
        assert (run / "figures" / f"test_{name}.png").stat().st_size > 1000
    assert (run / "figures" / "manifold.png").is_file()  # training draws it too


@pytest.mark.slow
@pytest.mark.parametrize("command", [("vae-eval",), (sys.executable, "-m", "vae_lab.evaluate")])
def test_command_from_another_directory_writes_only_into_the_run(command, run_dir, tmp_path):
    """Run from a directory that is not the repository: eval.json goes into the run, nothing into the cwd (vae-eval
    composes its options with Hydra but is no Hydra app: no outputs/, no .log file)."""
    (run_dir / "eval.json").unlink(missing_ok=True)
    out = subprocess.run([*command, f"run={run_dir}", *TINY_EVAL, "pictures=false"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "collapse" in out.stdout and json.loads((run_dir / "eval.json").read_text())["images"] == 48
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_help_lists_the_options_of_evaluate_yaml(tmp_path):
    out = subprocess.run(["vae-eval", "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    options = yaml.safe_load((Path(CONFIG_DIR) / "evaluate.yaml").read_text())
    keys = [*options, *(f"{k}.{sub}" for k, v in options.items() if isinstance(v, dict) for sub in v)]
    assert len(keys) > 10
    lines = [line.strip() for line in out.stdout.splitlines()]
    for key in keys:  # each option as the YAML writes it, `key: default`, nested ones under their parent
        assert any(line.startswith(f"{key.split('.')[-1]}:") for line in lines), key
    assert list(tmp_path.iterdir()) == []


def _copy_run(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("eval.json", "events.*", "figures"))
    return tmp_path / "run"


def _break_truncated(run):
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])


def _break_missing(run):
    (run / "checkpoints" / "last.pt").unlink()


def _break_other_model(run):
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["model"] = {k: torch.zeros(3, *v.shape[1:]) if k.startswith("encoder.") else v for k, v in state["model"].items()}
    torch.save(state, run / "checkpoints" / "last.pt")


def _break_not_a_checkpoint(run):
    torch.save({"weights": torch.zeros(3)}, run / "checkpoints" / "last.pt")


@pytest.mark.parametrize("breaker,message", [
    (_break_truncated, "not a readable vae_lab checkpoint"),
    (_break_missing, "no checkpoint there"),
    (_break_other_model, "checkpoint does not fit the model"),
    (_break_not_a_checkpoint, "not a vae_lab checkpoint"),
])
def test_bad_checkpoint_exits_with_one_line_and_writes_nothing(breaker, message, run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path)
    breaker(run)
    before = _snapshot(run)
    with pytest.raises(SystemExit) as e:
        evaluate.main([f"run={run}", *TINY_EVAL])
    text = str(e.value)
    assert text.startswith("vae-eval: error: ") and message in text and "\n" not in text, text
    assert _snapshot(run) == before


@pytest.mark.parametrize("args,message", [
    ([], "run: required"),
    (["run=RUN", "checkpoint=first"], "checkpoint='first': must be one of last, best"),
    (["run=RUN", "iwae.k=-1"], "iwae.k=-1: must be an integer >= 0"),
    (["run=RUN", "iwea.k=10"], "iwea"),
    (["run=RUN", "max_images=0"], "max_images=0: must be an integer >= 1"),
    (["RUN"], "arguments are key=value"),
    (["run=RUN", "iwae=3"], "iwae=3: iwae holds keys"),
    (["run=NOWHERE"], "not a vae_lab run directory"),
    (["run=RUN", "metrics=[mig,dci]"], "metrics='mig': must be one of mig_dlib"),
    (["run=RUN", "metrics=dci"], "metrics=dci: must be all or a list"),
    (["run=RUN", "sweep=RUN"], "run and sweep: give one of run, runs and sweep"),
    (["runs=[RUN]"], "UDR compares a run with others of the same setting: got 1 run(s)"),
    (["runs=RUN"], "must be a list of run directories"),
    (["run=RUN", "metric_sizes=huge"], "metric_sizes='huge': must be one of"),
    (["run=RUN", "representation=median"], "representation='median': must be one of"),
    (["run=RUN", "metric_sizes={dci:{n_trees:5}}"], "metric_sizes.dci='n_trees': must be one of"),
])
def test_bad_arguments_exit_with_one_line(args, message, run_dir, tmp_path):
    args = [a.replace("RUN", str(run_dir)).replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    before = _snapshot(run_dir)
    with pytest.raises(SystemExit) as e:
        evaluate.main(args)
    text = str(e.value)
    assert text.startswith("vae-eval: error: ") and message in text and "\n" not in text, text
    assert _snapshot(run_dir) == before and not (tmp_path / "nowhere").exists()


def test_a_sweep_jobs_directory_with_equals_signs(run_dir, tmp_path, capsys):
    """A sweep names its jobs kl.beta=4/seed=0: such a path is a value Hydra's override grammar must get quoted."""
    job = tmp_path / "kl.beta=4" / "seed=0"
    shutil.copytree(run_dir, job)
    evaluate.main([f"run={job}", *TINY_EVAL, "pictures=false", "metrics=[]"])
    assert (job / "eval.json").is_file() and str(job) in capsys.readouterr().out


def test_every_disentanglement_metric_on_small_samples(run_dir, tmp_path, capsys):
    """The six metrics of the β story through vae-eval, with the sizes given as a mapping over the full protocol
    (tests/test_metrics_new.py runs metrics=all)."""
    six = ["mig_dlib", "mig_chen", "factor_vae", "dci", "sap", "beta_vae"]
    run = _copy_run(run_dir, tmp_path)
    sizes = ("{mig_dlib:{n:500},mig_chen:{n_images:300,n_samples:200},factor_vae:{n_var:300,n_train:40,n_eval:20},"
             "dci:{n_train:200,n_test:100,n_estimators:5,max_features:16},sap:{n_train:200,n_test:100},"
             "beta_vae:{n_train:40,n_eval:20}}")
    evaluate.main([f"run={run}", "iwae.k=0", "max_images=48", "pictures=false", f"metrics=[{','.join(six)}]",
                   f"metric_sizes={sizes}"])
    result = json.loads((run / "eval.json").read_text())
    assert set(result["disentanglement"]["protocol"]) == set(six) and "metrics_note" not in result
    assert result["disentanglement"]["protocol"]["dci"]["n_train"] == 200  # the mapping reached the metric
    for key in ("mig_dlib", "mig_chen", "factor_vae", "dci_disentanglement", "dci_completeness", "sap", "beta_vae"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["disentanglement"]["sklearn_version"]
    assert "dci_disentanglement" in capsys.readouterr().out


def test_the_other_disentanglement_lib_metrics_by_name(run_dir, tmp_path):
    """vae-eval takes the metrics after the first six by name, with their sizes as a mapping (test_metrics_dlib holds
    their known answers)."""
    run = _copy_run(run_dir, tmp_path)
    evaluate.main([f"run={run}", "iwae.k=0", "max_images=48", "pictures=false", "metrics=[irs,modularity_ridgeway]",
                   "metric_sizes={irs:{n:300},modularity_ridgeway:{n:300}}"])
    result = json.loads((run / "eval.json").read_text())
    assert result["disentanglement"]["protocol"] == {"irs": {"n": 300}, "modularity_ridgeway": {"n": 300}}
    assert 0.0 <= result["irs"] <= 1.0 and 0.0 <= result["modularity_ridgeway"] <= 1.0


def test_both_representations(run_dir, tmp_path, capsys):
    """representation=both: each metric's headline on the posterior means and, keyed _sampled, on one z ~ q(z|x)
    per image, with the whole results under disentanglement and disentanglement_sampled; the rest of eval.json as
    with the means alone."""
    run = _copy_run(run_dir, tmp_path)
    evaluate.main([f"run={run}", *TINY_EVAL, "pictures=false", "representation=both"])
    result = json.loads((run / "eval.json").read_text())
    assert set(result) == KEYS | {"disentanglement_sampled", "mig_dlib_sampled", "sap_sampled"}
    assert result["representation"] == "both" and result["disentanglement_sampled"]["representation"] == "sampled"
    assert set(result["disentanglement_sampled"]["protocol"]) == {"mig_dlib", "sap"}
    for key in ("mig_dlib_sampled", "sap_sampled"):
        assert 0.0 <= result[key] <= 1.0, key
    assert "sap_sampled" in capsys.readouterr().out
