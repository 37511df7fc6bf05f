"""Stacked sweeps (hydra/launcher=stacked, vae_lab.runtime.stack): each model of a stack is the run it would have
been alone, faults stay per model, a stack's checkpoints are consistent across its members at any kill, and the
launcher groups, fans out and writes run directories as a lone run's.

The tolerance a stacked member is held to, against its lone run: every parameter tensor within TOLERANCE of its
largest absolute entry, the validation ELBO within ELBO_NATS (a batched product sums in another order than a lone
one). Resumed stacks are held to bit-identity with a stack that ran straight through."""
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import SMALL, TINY, compose_config, options
from test_sigkill import identical

import vae_lab.train
from vae_lab import rundir
from vae_lab.checks import ConfigError
from vae_lab.runtime import resources, stack
from vae_lab.runtime.build import build, build_model
from vae_lab.train import train, train_stacked

TOLERANCE, ELBO_NATS = 1e-3, 0.05


def configs(*members, common=()):
    """One config per member: the TINY run with `common` and the member's own overrides."""
    return [compose_config([*TINY, *common, *m]) for m in members]


def record(root):
    return {"id": "test/stack-0", "manifest": str(Path(root) / "stack" / stack.MANIFEST), "members": []}


def lone_and_stacked(root, cfgs):
    """(summaries of each config trained alone, summaries of them trained as one stack)."""
    lone = [train(c, Path(root) / f"lone{i}") for i, c in enumerate(cfgs)]
    stacked = train_stacked(cfgs, [Path(root) / f"member{i}" for i in range(len(cfgs))], record(root))
    return lone, stacked


def assert_close(a_dir, b_dir):
    """Two runs' last checkpoints within the tolerance: the model's parameters and the penalty's."""
    a, b = (torch.load(rundir.checkpoint(d), weights_only=True) for d in (a_dir, b_dir))
    assert a["step"] == b["step"]
    for part in ("model", "penalty"):
        for name, t in a[part].items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
                scale = t.abs().max().clamp_min(1e-12)
                assert ((t - b[part][name]).abs().max() / scale) < TOLERANCE, (part, name)


def assert_member_is_lone(lone, member):
    assert member["status"] == lone["status"] == "completed"
    assert abs(member["elbo"] - lone["elbo"]) < ELBO_NATS
    assert_close(lone["run_dir"], member["run_dir"])
    lone_lines, member_lines = (Path(s["run_dir"], rundir.METRICS).read_text().splitlines() for s in (lone, member))
    assert len(lone_lines) == len(member_lines)
    for a, b in zip(lone_lines, member_lines):
        a, b = json.loads(a), json.loads(b)
        assert a["step"] == b["step"] and abs(a["elbo"] - b["elbo"]) < ELBO_NATS


def quick(values, fast):
    """`values` as parameters, those not in `fast` marked slow: the fast tier keeps a few."""
    return [v if v in fast else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=pytest.mark.slow)
            for v in values]


@pytest.mark.parametrize("penalty", quick(options("penalty"), ("kl", "factor_vae")))
def test_each_member_of_a_stack_is_its_lone_run_for_every_penalty(tmp_path, penalty):
    """Two members differing in seed (initialisation, data order, noise, the penalty's draws) and β; FactorVAE's
    discriminator and its Adam are each member's own."""
    cfgs = configs(["seed=0", "kl.beta=1"], ["seed=1", "kl.beta=4"], common=[f"penalty={penalty}", *SMALL.get(penalty, [])])
    lone, stacked = lone_and_stacked(tmp_path, cfgs)
    for a, b in zip(lone, stacked):
        assert_member_is_lone(a, b)
        assert b["stack"] == {"id": "test/stack-0", "members": [str(tmp_path / f"member{i}") for i in range(2)]}


@pytest.mark.parametrize("kl", quick([o for o in options("kl") if o != "constant"], ("linear",)))
def test_each_member_keeps_its_own_kl_schedule(tmp_path, kl):
    """Members with different schedules in one stack (the kl group is the member's own: the loop computes each
    member's weight), and a likelihood's fixed scale per member (a stacked buffer)."""
    cfgs = configs([f"kl={kl}", "kl.beta=2"], ["kl=constant", "seed=3"],
                   ["likelihood=gaussian", "likelihood.sigma=0.3", "seed=1"])[:2]
    sigma = configs(["likelihood=gaussian", "likelihood.sigma=0.3"], ["likelihood=gaussian", "likelihood.sigma=0.1"])
    for root, group in ((tmp_path / "kl", cfgs), (tmp_path / "sigma", sigma)):
        for a, b in zip(*lone_and_stacked(root, group)):
            assert_member_is_lone(a, b)


def test_a_poisoned_model_diverges_alone(tmp_path):
    """One model of four with a penalty weight that overflows: it ends diverged (its run directory says so, its last
    good checkpoint kept); the three others end as their lone runs."""
    members = [["seed=0"], ["seed=1", "penalty.gamma=1e38"], ["seed=2"], ["seed=3", "kl.beta=2"]]
    cfgs = configs(*members, common=["penalty=capacity", "trainer.max_steps=9"])
    lone = [train(c, tmp_path / f"lone{i}") for i, c in enumerate(cfgs) if i != 1]
    stacked = train_stacked(cfgs, [tmp_path / f"member{i}" for i in range(4)], record(tmp_path))
    assert [s["status"] for s in stacked] == ["completed", "diverged", "completed", "completed"]
    poisoned = json.loads((tmp_path / "member1" / rundir.SUMMARY).read_text())
    assert poisoned["status"] == "diverged" and "training diverged at step 1" in poisoned["error"]
    for a, b in zip(lone, [stacked[0], *stacked[2:]]):
        assert_member_is_lone(a, b)


@pytest.mark.parametrize("override,message", [
    ("trainer.nonfinite=skip", "trainer.nonfinite=skip: not with hydra/launcher=stacked (Adam over a stacked tensor"),
    ("trainer.devices=2", "trainer.devices=2: not with hydra/launcher=stacked (a stack trains in one process)"),
    ("trainer.compile=true", "trainer.compile=True: not with hydra/launcher=stacked"),
])
def test_what_a_stack_cannot_do_is_refused_in_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        train_stacked(configs(["seed=0", override], ["seed=1", override]), [tmp_path / "a", tmp_path / "b"],
                      record(tmp_path))
    assert not (tmp_path / "a").exists()


def test_the_stacks_memory_is_checked_before_training(tmp_path, monkeypatch):
    """Room for two and a half models' parameters, gradients and Adam moments: a stack of three is refused in one
    line naming the largest that fits, before anything is written."""
    cfgs = configs(*[[f"seed={s}"] for s in range(3)])
    model = build_model(cfgs[0], build("dataset", cfgs[0].dataset, device=torch.device("cpu")))
    one = resources.COPIES * sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(resources, "available_memory", lambda device: 2.5 * one)
    with pytest.raises(ConfigError, match=r"^hydra.launcher.max_stack: a stack of 3 models needs .* the largest stack "
                                          r"that fits is 2 \(set hydra.launcher.max_stack\)$"):
        train_stacked(cfgs, [tmp_path / f"m{i}" for i in range(3)], record(tmp_path))
    assert not (tmp_path / "m1").exists()


def test_jobs_that_differ_beyond_the_stackable_keys_are_stacked_apart():
    base = {"seed": 0, "kl": {"beta": 1}, "optimizer": {"lr": 1e-3}, "penalty": {"gamma": 1.0, "estimator": "mss"}}

    def job(**changes):
        cfg = json.loads(json.dumps(base))
        for key, value in changes.items():
            node, *path = key.split("__")
            (cfg[node] if path else cfg).__setitem__(path[0] if path else node, value)
        return cfg

    jobs = [job(seed=1), job(kl__beta=4), job(optimizer__lr=2e-3), job(penalty__gamma=3.0), job(penalty__estimator="mws"),
            job(seed=2, optimizer__lr=2e-3)]
    assert stack.groups(jobs, 64) == [([0, 1, 3], []), ([2, 5], ["optimizer.lr"]), ([4], ["penalty.estimator"])]
    assert stack.groups(jobs, 2) == [([0, 1], []), ([3], []), ([2, 5], ["optimizer.lr"]), ([4], ["penalty.estimator"])]
    assert stack.swept(jobs, [0, 1, 3]) == "kl.beta=1,4 penalty.gamma=1.0,3.0 seed=1,0"


def straight_and_resumed(root, cfgs, interrupt):
    """A stack trained straight through, and the same stack interrupted by `interrupt(dirs)` then resumed."""
    straight = train_stacked(cfgs, [root / f"straight{i}" for i in range(len(cfgs))], record(root / "s"))
    dirs = [root / f"member{i}" for i in range(len(cfgs))]
    interrupt(dirs)
    for cfg, d in zip(cfgs, dirs):
        cfg.resume = str(d)
    resumed = train_stacked(cfgs, dirs, record(root / "r"))
    for a, b in zip(straight, resumed):
        assert b["status"] == "completed"
        assert identical(*(torch.load(rundir.checkpoint(s["run_dir"]), weights_only=True)["model"] for s in (a, b)))
        assert a["elbo"] == b["elbo"]


def test_a_stack_stopped_then_resumed_ends_as_a_straight_run(tmp_path):
    members = [["seed=0", "penalty=factor_vae", *SMALL["factor_vae"]],
               ["seed=1", "penalty=factor_vae", *SMALL["factor_vae"], "penalty.gamma=10"]]

    def stop_at_3(dirs):
        stopped = train_stacked(configs(*[[*m, "trainer.stop_at_step=3"] for m in members]), dirs, record(tmp_path / "r"))
        assert {s["status"] for s in stopped} == {"stopped"}

    straight_and_resumed(tmp_path, configs(*members), stop_at_3)


# The moments of a save of two members' last.pt, in order: the pending files, the manifest, the renames.
COMMIT = [("save_atomic", 1), ("save_atomic", 2), ("write_manifest", 1), ("commit", 1), ("commit", 2)]


@pytest.mark.parametrize("call,nth", quick(COMMIT, (("write_manifest", 1), ("commit", 2))))
def test_a_kill_at_any_moment_of_a_stacks_checkpoint_leaves_it_resumable(tmp_path, monkeypatch, call, nth):
    """A kill (here: an exception where the kill would land) just before the `nth` `call` of the second save of
    last.pt (step 6 of 6; the first, at step 3, completed). Each member then resumes from one consistent step and
    the stack ends bit-identical to one that ran straight through."""
    cfgs = configs(["seed=0"], ["seed=1", "kl.beta=4"])

    def killed(dirs):
        saves, calls = [], {name: 0 for name, _ in COMMIT}

        def counted(name, real):
            def call_(*args, **kwargs):
                if len(saves) == 2:  # inside the second save of last.pt
                    calls[name] += 1
                    if (name, calls[name]) == (call, nth):
                        raise KeyboardInterrupt(f"killed before {name} #{nth}")
                return real(*args, **kwargs)
            return call_

        def save_members(states, run_dirs, name, *args):
            saves.extend([name] if name == rundir.LAST else [])
            return real_save(states, run_dirs, name, *args)

        real_save = vae_lab.train.save_members
        monkeypatch.setattr(vae_lab.train, "save_members", save_members)
        for name in calls:
            monkeypatch.setattr(stack, name, counted(name, getattr(stack, name)))
        with pytest.raises(KeyboardInterrupt):
            train_stacked(configs(["seed=0"], ["seed=1", "kl.beta=4"]), dirs, record(tmp_path / "r"))
        monkeypatch.undo()
        steps = [torch.load(rundir.checkpoint(d), weights_only=True)["step"] for d in dirs]
        assert steps == ([6, 3] if (call, nth) == ("commit", 2) else [3, 3])  # [6, 3]: settled on resume

    straight_and_resumed(tmp_path, cfgs, killed)


# ---- through the command line: the launcher

def stacked_sweep(tmp_path, *args, check=True, name="sweep"):
    sweep_dir = tmp_path / name
    out = subprocess.run(["vae-train", "-m", *TINY, "hydra/launcher=stacked", *args, f"hydra.sweep.dir={sweep_dir}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return sweep_dir, out


def runs(sweep_dir):
    """{job directory below the sweep: summary.json} of the sweep's runs (the stacks' own directories aside)."""
    return {p.parent.relative_to(sweep_dir).as_posix(): json.loads((p.parent / rundir.SUMMARY).read_text())
            for p in sweep_dir.rglob(".hydra") if not (p.parent / stack.MANIFEST).exists()}


@pytest.mark.slow
def test_the_issues_command_trains_four_lone_runs_in_one_stack(tmp_path):
    """vae-train -m hydra/launcher=stacked kl.beta=1,4 seed=0,1 trainer.max_steps=20: one process, four run
    directories laid out as a lone run's, one `stack` entry in all four; each model within the tolerance of its lone
    run (the same sweep through the basic launcher); vae-eval and vae-compare read them unchanged."""
    args = ["kl.beta=1,4", "seed=0,1", "trainer.max_steps=20"]
    sweep_dir, out = stacked_sweep(tmp_path, *args)
    assert "stack 0: 4 models (dataset.seed=0,1 kl.beta=1,4 seed=0,1)" in out.stderr + out.stdout
    lone_dir = tmp_path / "lone"
    lone = subprocess.run(["vae-train", "-m", *TINY, *args, f"hydra.sweep.dir={lone_dir}"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert lone.returncode == 0, lone.stderr
    stacked, alone = runs(sweep_dir), runs(lone_dir)
    assert sorted(stacked) == sorted(alone) and len(stacked) == 4
    [entry] = {json.dumps(s["stack"]) for s in stacked.values()}
    assert sorted(json.loads(entry)["members"]) == sorted(str(sweep_dir / k) for k in stacked)
    for job, summary in stacked.items():
        run = sweep_dir / job
        for name in (".hydra/config.yaml", "metrics.jsonl", "summary.json", "train.log", "checkpoints/last.pt",
                     "checkpoints/best.pt"):
            assert (run / name).is_file(), name
        assert list(run.glob("events.out.tfevents.*"))
        assert f"stack {summary['stack']['id']}: 4 models trained together" in (run / "train.log").read_text()
        assert abs(summary["elbo"] - alone[job]["elbo"]) < ELBO_NATS
        assert_close(lone_dir / job, run)
    job = next(iter(stacked))
    ev = subprocess.run(["vae-eval", f"run={sweep_dir / job}", "iwae.k=4", "max_images=48", "metrics=[]",
                         "pictures=false"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    cmp = subprocess.run(["vae-compare", str(sweep_dir)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cmp.returncode == 0 and cmp.stdout.count("completed") >= 4, cmp.stdout + cmp.stderr


@pytest.mark.slow
def test_stacks_fan_out_through_another_launcher(tmp_path):
    """Two learning rates: two stacks, the line saying why; each stack one job of submitit_local (the processes
    submitit starts on Slurm, here on this machine), with that launcher's own keys."""
    sweep_dir, out = stacked_sweep(tmp_path, "optimizer.lr=1e-3,2e-3", "seed=0,1", "hydra.launcher.fan_out=submitit_local",
                                   "+hydra.launcher.options={timeout_min:10}")
    log = out.stdout + out.stderr
    assert "stack 0: 2 models (dataset.seed=0,1 seed=0,1)" in log
    assert "stack 1: 2 models (dataset.seed=0,1 seed=0,1)" in log and "apart from stack 0 by optimizer.lr" in log
    found = runs(sweep_dir)
    assert len(found) == 4 and {s["status"] for s in found.values()} == {"completed"}
    assert len({s["stack"]["id"] for s in found.values()}) == 2


SIGNALLED = ["seed=0,1", "kl.beta=1,4", "trainer.max_steps=40", "trainer.epochs=8", "trainer.checkpoint_every=4",
             "trainer.log_every=4", "trainer.eval_every=20"]


@pytest.fixture(scope="module")
def straight_sweep(tmp_path_factory):
    return stacked_sweep(tmp_path_factory.mktemp("straight"), *SIGNALLED, name="straight")[0]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_stacked_sweep_resumed_with_resume_auto_ends_as_one_run_straight(tmp_path, straight_sweep, how):
    """SIGTERM: every member checkpoints once and ends interrupted; SIGKILL at a random moment after the first
    checkpoint: every member resumes from one consistent step. The same command with resume=auto then ends every
    member bit-identical to a sweep that ran straight through."""
    args, straight_dir = SIGNALLED, straight_sweep
    sweep_dir = tmp_path / "sweep"
    command = ["vae-train", "-m", *TINY, "hydra/launcher=stacked", *args, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(sweep_dir.rglob("last.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(float(torch.rand(()) * 0.5) if how == "SIGKILL" else 0)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert {(s["status"], s["signal"]) for s in runs(sweep_dir).values()} == {("interrupted", "SIGTERM")}
    again = subprocess.run([*command, "resume=auto"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "stack 0: 4 models" in again.stdout + again.stderr
    finished, straight = runs(sweep_dir), runs(straight_dir)
    assert {(s["status"], s["steps"]) for s in finished.values()} == {("completed", 40)}
    for job in straight:
        a, b = (torch.load(rundir.checkpoint(d / job), weights_only=True) for d in (straight_dir, sweep_dir))
        assert identical(a["model"], b["model"]) and identical(a["optimizer"], b["optimizer"]), job
    assert not list(sweep_dir.rglob("*" + stack.PENDING))
