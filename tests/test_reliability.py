"""Interrupted, diverging and resumed runs: signals, NaN/Inf, resume=auto, damaged checkpoints."""
import ast
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY, compose_config, scalars, trained_run

from vae_lab.checks import ConfigError
from vae_lab.decoders import MLPDecoder
from vae_lab.likelihoods import Bernoulli
from vae_lab.runtime import resume
from vae_lab.runtime.interrupt import StopRequest
from vae_lab.train import train


def poison_at(monkeypatch, cls, method, call, how):
    """Make the `call`-th training call (grad enabled) of cls.method return how(output)."""
    original, calls = getattr(cls, method), []

    def poisoned(self, *args):
        out = original(self, *args)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == call:
                return how(out, *args)
        return out
    monkeypatch.setattr(cls, method, poisoned)


def test_nan_reconstruction_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    poison_at(monkeypatch, Bernoulli, "log_prob", 5, lambda out, x, params: out * float("nan"))
    run_dir, _, summary = trained_run(tmp_path / "run", TINY)
    assert summary["status"] == "diverged"
    assert summary["error"].startswith("training diverged at step 5: non-finite reconstruction term")
    assert "(step 3)" in summary["error"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == [3]
    assert [s for s, _ in scalars(run_dir)["train/elbo"]] == [2, 4]  # step 6's would include step 5's NaN


def test_nan_gradient_names_the_parameter(tmp_path, monkeypatch):
    # sqrt'(0) = inf: the forward pass stays finite, the gradient reaching the encoder is NaN
    poison_at(monkeypatch, MLPDecoder, "forward", 2, lambda out, z: out + (z * 0).sqrt().sum() * 0)
    run_dir, _, summary = trained_run(tmp_path / "run", TINY)
    assert summary["status"] == "diverged"
    assert summary["error"].startswith("training diverged at step 2: non-finite gradient of encoder."), summary
    assert "no checkpoint had been written" in summary["error"]
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_an_update_that_blows_up_is_caught_before_a_checkpoint(tmp_path):
    """Every term and gradient of step 1 is finite; the parameters it leaves are useless."""
    run_dir, _, summary = trained_run(tmp_path / "run", [*TINY, "optimizer.lr=1e20", "trainer.max_steps=1"])
    assert summary["status"] == "diverged"
    assert summary["error"].startswith("training diverged by step 1: validation elbo nan"), summary["error"]
    assert not (run_dir / "checkpoints").exists()


def test_a_parameter_made_infinite_by_an_update_is_never_saved(tmp_path, monkeypatch):
    def overflow(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        self.param_groups[0]["params"][0].data[0, 0] = float("inf")
        return out
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", overflow)
    run_dir, _, summary = trained_run(tmp_path / "run", [*TINY, "trainer.checkpoint_every=1", "trainer.log_every=5"])
    assert summary["error"].startswith("training diverged by step 1: non-finite encoder.features.1.0.weight after"), summary
    assert not (run_dir / "checkpoints").exists()


def test_skip_drops_the_bad_step_and_counts_it(tmp_path, monkeypatch):
    poison_at(monkeypatch, Bernoulli, "log_prob", 5, lambda out, x, params: out * float("inf"))
    run_dir, _, summary = trained_run(tmp_path / "run", [*TINY, "trainer.nonfinite=skip"])
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    assert [(s, v) for s, v in scalars(run_dir)["train/skipped_steps"]] == [(2, 0), (4, 0), (6, 1)]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert all(t.isfinite().all() for t in state["model"].values())


def test_first_signal_asks_to_stop_second_exits_and_handlers_come_back():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.signal == "SIGTERM" and stop.exit_code == 143
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert e.value.code == 130
    assert signal.getsignal(signal.SIGINT) is before


CLI_TINY = [*TINY, "trainer.max_steps=100000", "trainer.epochs=100000", "trainer.checkpoint_every=4"]


@pytest.mark.slow
def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "outputs" / "runs" / "a"
    proc = subprocess.Popen(["vae-train", *CLI_TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert f"continue with: vae-train resume={run_dir}" in err.splitlines()[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == summary["steps"]

    # a re-queued job: the same command with resume=auto continues that run (here to a stop_at_step)
    stop = summary["steps"] + 3
    again = subprocess.run(["vae-train", *CLI_TINY, "resume=auto", f"trainer.stop_at_step={stop}",
                            f"hydra.run.dir={tmp_path / 'outputs' / 'runs' / 'b'}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resume=auto: continuing {run_dir}" in again.stdout
    assert json.loads((run_dir / "summary.json").read_text()) | {"steps": stop} == {
        "status": "stopped", "signal": None, "exit_code": 0, "steps": stop, "run_dir": str(run_dir),
        "message": f"stopped at step {stop} (trainer.stop_at_step), {run_dir}/checkpoints/last.pt written; "
                   f"continue with: vae-train resume={run_dir}"}
    assert not (tmp_path / "outputs" / "runs" / "b" / "checkpoints").exists()


def _run(tmp_path, name, overrides):
    """(config, directory) of a finished or stopped run of four tiny steps under tmp_path/resume."""
    run = trained_run(tmp_path / "runs" / name, [*TINY, "trainer.max_steps=4", *overrides])
    return run.cfg, run.dir


@pytest.mark.slow
def test_resume_auto_picks_the_newest_unfinished_run_of_the_same_config(tmp_path):
    cfg, old = _run(tmp_path, "old", ["trainer.stop_at_step=2"])
    _, new = _run(tmp_path, "new", ["trainer.stop_at_step=2"])
    _run(tmp_path, "done", [])  # completed: not resumed
    _run(tmp_path, "other", ["trainer.stop_at_step=2", "kl.beta=2"])  # another config
    os.utime(old / "checkpoints" / "last.pt", (1, 1))
    me = compose_config([*TINY, "trainer.max_steps=4", "resume=auto", "trainer.log_every=1", "device=cpu"])
    resumed, run_dir = resume.resume_target(me, tmp_path / "runs" / "mine", ["trainer.log_every=1", "device=cpu"],
                                          [tmp_path / "runs"])
    assert run_dir == new and resumed.resume == str(new) and resumed.trainer.log_every == 1
    assert train(resumed, run_dir)["status"] == "completed"
    assert resume.find_unfinished(me, [tmp_path / "runs"]) == old
    fresh = compose_config([*TINY, "trainer.max_steps=4", "resume=auto", "kl.beta=3"])
    assert resume.resume_target(fresh, tmp_path / "x", [], [tmp_path / "runs"])[1] == tmp_path / "x"
    assert fresh.resume is None


def test_search_roots_are_the_fixed_part_of_the_hydra_dirs():
    assert resume.search_roots("outputs/runs/${now:%Y-%m-%d}/${now:%H}", "outputs/sweeps/${now:%Y}") == [
        resume.Path("outputs/runs"), resume.Path("outputs/sweeps")]
    assert resume.search_roots("/scratch/job7", "/scratch/sweep") == [resume.Path("/scratch")]


def test_resume_refuses_an_override_that_changes_the_run(tmp_path):
    cfg, run_dir = _run(tmp_path, "a", ["trainer.stop_at_step=2"])
    cfg.resume, cfg.kl.beta = str(run_dir), 4.0  # as composed from `resume=<dir> kl.beta=4`
    with pytest.raises(ConfigError, match=r"^kl.beta=4: resume=.* where kl.beta=1.0"):
        resume.resume_target(cfg, tmp_path / "b", ["kl.beta=4"], [])
    cfg.kl.beta, cfg.device = 1.0, "cpu"
    resumed, _ = resume.resume_target(cfg, tmp_path / "b", ["kl.beta=1.0", "device=cpu"], [])  # agreeing: fine
    assert resumed.device == "cpu"
    other = compose_config(["experiment=keras_tutorial", f"resume={run_dir}"])  # sets keys of its own
    with pytest.raises(ConfigError, match=r"^experiment=keras_tutorial: resume=.* where dataset\._target_=vae_lab.data.sprites"):
        resume.resume_target(other, tmp_path / "b", ["experiment=keras_tutorial"], [])


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable vae_lab checkpoint"),
    (lambda p: p.write_bytes(b""), "not a readable vae_lab checkpoint"),
    (lambda p: torch.save({"model": {"w": torch.zeros(2)}}, p), "does not fit this run's model"),
    (lambda p: torch.save([1, 2, 3], p), "does not fit this run's model"),
    (lambda p: p.unlink(), "no checkpoint there"),
])
def test_damaged_checkpoint_is_one_line(tmp_path, damage, message):
    cfg, run_dir = _run(tmp_path, "a", ["trainer.stop_at_step=2"])
    damage(run_dir / "checkpoints" / "last.pt")
    cfg.resume = str(run_dir)
    with pytest.raises(ConfigError, match=message) as e:
        train(cfg, run_dir)
    assert "\n" not in str(e.value)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    _, small = _run(tmp_path, "small", ["trainer.stop_at_step=2"])
    cfg, big = _run(tmp_path, "big", ["trainer.stop_at_step=2", "encoder.hidden=[48]"])
    (big / "checkpoints" / "last.pt").write_bytes((small / "checkpoints" / "last.pt").read_bytes())
    cfg.resume = str(big)
    with pytest.raises(ConfigError, match=r"resume=.*big: checkpoints/last.pt does not fit this run's model \(.*size mismatch"):
        train(cfg, big)


def test_resuming_a_finished_run_logs_nothing_twice(tmp_path):
    cfg, run_dir = _run(tmp_path, "a", [])
    before = json.loads((run_dir / "summary.json").read_text())
    cfg.resume = str(run_dir)
    after = train(cfg, run_dir)
    assert [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == [3, 4]
    logged = scalars(run_dir)
    assert "train/elbo" in logged and "val/elbo" in logged
    assert all(len(steps) == len(set(steps)) for steps in ([s for s, _ in v] for v in logged.values()))
    assert after["elbo"] == before["elbo"] and after["steps"] == before["steps"] == 4


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    cfg, run_dir = _run(tmp_path, "a", ["trainer.stop_at_step=3", "trainer.max_steps=6"])
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "elb')  # killed mid-write
    cfg.resume = str(run_dir)
    train(cfg, run_dir)
    assert [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == [3, 6]


UNSAFE = re.compile(r"\bimport (c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b|pickle\.loads?\(|joblib\.load"
                    r"|weights_only\s*=\s*False|allow_pickle\s*=\s*True|(?<![.\w])(eval|exec)\("
                    r"|yaml\.unsafe_load\(|yaml\.load\([^)]*(Unsafe|Full|yaml\.Loader)|yaml\.load\((?![^)]*Loader)")
ROOT = Path(__file__).resolve().parents[1]


def sources():
    return sorted({*ROOT.glob("vae_lab/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py")})


def unsafe_torch_loads(source, filename):
    """file:line of each torch.load(...) without the keyword weights_only=True (a literal True), and of each
    `from torch import load` (a call to it would escape this check)."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                            for k in node.keywords)):
            lines.append(node.lineno)
    return [f"{filename}:{n}" for n in sorted(lines)]


def test_every_torch_load_passes_weights_only_true():
    """torch.load of a checkpoint unpickles arbitrary objects unless weights_only=True; ruff has no rule for it."""
    paths = sources()
    assert len(paths) > 20 and ROOT / "vae_lab" / "runtime" / "checkpoint.py" in paths
    offenders = [hit for path in paths for hit in unsafe_torch_loads(path.read_text(), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_the_torch_load_check_finds_bad_calls():
    bad = """import torch
from torch import load
torch.load(path)
torch.load(path, weights_only=False)
torch.load(path, weights_only=flag)
torch.load(path, weights_only="True")
torch.load(path, **options)
state = dict(a=torch.load(path, map_location="cpu"))
"""
    good = "import numpy, torch\ntorch.load(p, map_location='cpu', weights_only=True)\nnumpy.load(p)\nmodel.load(p)\n"
    assert unsafe_torch_loads(bad, "bad.py") == [f"bad.py:{n}" for n in range(2, 9)]
    assert unsafe_torch_loads(good, "good.py") == []


ON_PURPOSE = "# a pickle on purpose"  # only tests may, to check that vae_lab never loads one


def test_nothing_unpickles_arbitrary_objects():
    paths = [p for p in sources() if p != Path(__file__).resolve()]  # not the patterns themselves
    assert len(paths) > 20
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.rstrip().endswith(ON_PURPOSE) and path.parent.name == "tests":  # a test writing a bad file
                continue
            assert not UNSAFE.search(line), f"{path}:{n}: {line.strip()}"


def test_checkpoint_restores_every_random_state(tmp_path):
    import random

    import numpy as np

    from vae_lab.runtime import checkpoint

    generators = {"noise": torch.Generator().manual_seed(1), "binarize": torch.Generator().manual_seed(2)}
    torch.manual_seed(3), random.seed(4), np.random.seed(5)
    checkpoint.save_atomic({"rng": checkpoint.rng_state(generators)}, tmp_path / "c.pt")
    draw = lambda: (torch.rand(3), random.random(), np.random.rand(), *(torch.rand(2, generator=g) for g in generators.values()))
    first = draw()
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"], generators)
    for a, b in zip(first, draw()):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@pytest.mark.parametrize("fused", [False, True])
def test_the_guard_names_a_non_finite_gradient_either_way(fused):
    """The per-parameter sums (CPU) and the fused largest |entry| (what a GPU runs; forced here) find the same bad
    gradient and name its parameter."""
    from types import SimpleNamespace

    from vae_lab.runtime.guard import NonFiniteGuard
    from vae_lab.runtime.means import TrainingMeans

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    means = TrainingMeans((), torch.device("cpu"))
    guard = NonFiniteGuard(model, skip=False, means=means)
    guard.fused = fused
    loss = model(torch.ones(5, 3)).sum()
    loss.backward()
    terms = SimpleNamespace(recon_ll=torch.zeros(5), kl=torch.zeros(5, 2))
    assert guard.record(0, loss, terms, {}, 1.0) and guard.problem(1) is None
    model[1].weight.grad[0, 1] = float("nan")
    guard.record(1, loss, terms, {}, 1.0)
    assert guard.problem(2) == "training diverged at step 2: non-finite gradient of 1.weight"


def test_the_guard_checks_a_penalty_updates_figures_and_averages_them():
    """FactorVAE's discriminator loss and accuracy come after the VAE's step: they join the step's row, are averaged
    as train/ scalars, and a non-finite one stops the run like any other term."""
    from types import SimpleNamespace

    from vae_lab.runtime.guard import NonFiniteGuard
    from vae_lab.runtime.means import TrainingMeans

    model = torch.nn.Linear(3, 2)
    means = TrainingMeans(("gamma_tc",), torch.device("cpu"), later=("discriminator_loss",))
    guard = NonFiniteGuard(model, skip=False, means=means)
    loss = model(torch.ones(5, 3)).sum()
    loss.backward()
    terms = SimpleNamespace(recon_ll=torch.zeros(5), kl=torch.zeros(5, 2))
    for step, figure in enumerate((1.0, 3.0)):
        guard.record(step, loss, terms, {"gamma_tc": torch.tensor(0.5)}, 1.0)
        guard.record_later({"discriminator_loss": torch.tensor(figure)})
    assert guard.problem(2) is None
    logged = means.pop()
    assert logged["discriminator_loss"] == 2.0 and logged["gamma_tc"] == 0.5
    guard.record(2, loss, terms, {"gamma_tc": torch.tensor(0.5)}, 1.0)
    guard.record_later({"discriminator_loss": torch.tensor(float("inf"))})
    assert guard.problem(3) == "training diverged at step 3: non-finite penalty update's discriminator_loss"
