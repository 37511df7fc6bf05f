"""One run across several processes (vae_lab.runtime.distributed): two gloo processes take the step one process
takes on the same global batch, for every penalty; vae-train trainer.devices=2 and torchrun write one run; a signal
stops both processes with one checkpoint that resumes exactly; a bad config is one line."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY, options, steps_for_every_penalty, trained_run

from vae_lab.checks import ConfigError
from vae_lab.runtime import distributed
from vae_lab.runtime.distributed import Team
from vae_lab.runtime.threads import threads_for


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_rows_share_any_batch_in_order(size):
    for n in range(12):
        parts = [Team(r, size).batch(n).rows for r in range(size)]
        assert [i for part in parts for i in range(n)[part]] == list(range(n))
        counts = [len(range(n)[part]) for part in parts]
        assert max(counts) - min(counts) <= 1


def test_the_global_batch_must_divide_among_the_processes():
    distributed.check_batch(32, 2)
    with pytest.raises(ConfigError, match=r"trainer.batch_size=33: .* among 2 processes .* trainer.batch_size=32"):
        distributed.check_batch(33, 2)


@pytest.mark.parametrize("nodelist,first", [("gpu07", "gpu07"), ("gpu[03-05,07],cpu1", "gpu03"),
                                            ("node[12,14]", "node12"), ("a1,b2", "a1")])
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert distributed.first_host(nodelist) == first


def test_slurm_tasks_become_ranks(monkeypatch):
    """Four tasks on two nodes (hydra/launcher=submitit_slurm nodes=2 tasks_per_node=2): task 3 is rank 3, local 1,
    and every task meets on the first node at the port of its job."""
    env = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
           "SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_NTASKS_PER_NODE": "2"}
    monkeypatch.setattr(os, "environ", env)  # a faked environment, gone after the test
    assert distributed.fill_environment() == (3, 4, 1, 2)
    assert env["MASTER_ADDR"] == "gpu03" and env["MASTER_PORT"] == str(20000 + 123456 % 10000)
    assert threads_for(None, 16, Team(*distributed.fill_environment()).local_size) == (8, "16 cores / 2 processes of this run")


def test_one_process_is_no_team(monkeypatch):
    monkeypatch.setattr(os, "environ", {"PATH": os.environ.get("PATH", "")})
    assert distributed.fill_environment() == (0, 1, 0, 1)
    x = torch.arange(6.0)
    batch = Team().batch(6)
    assert batch.gather(x) is x and batch.rows == slice(0, 6) and batch.mean(x) == x.mean()


@pytest.mark.slow
def test_two_processes_take_the_step_of_one_for_every_penalty(tmp_path):
    """Nine steps (an epoch, its last batch split 7 + 8) of every penalty: the parameters, the penalty's own
    (FactorVAE's discriminator) and the logged train/ sums of two gloo processes are one process's, to float rounding."""
    one = steps_for_every_penalty(tmp_path / "one", 9)
    two = distributed.launch(2, steps_for_every_penalty, str(tmp_path / "two"), 9)
    assert set(one) == set(options("penalty")) == set(two[0])
    for penalty in one:
        for part in ("model", "penalty"):
            for name, value in one[penalty][part].items():
                where = f"{penalty} {part} {name}"
                torch.testing.assert_close(two[0][penalty][part][name], value, rtol=1e-4, atol=1e-5,
                                           msg=lambda m, where=where: f"{where}: {m}")
                assert torch.equal(two[0][penalty][part][name], two[1][penalty][part][name]), (penalty, name)
        torch.testing.assert_close(two[0][penalty]["sums"], one[penalty]["sums"], rtol=1e-4, atol=1e-3)


def vae_train(args, cwd, **kwargs):
    return subprocess.run(["vae-train", *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow
def test_devices_2_writes_one_run_and_reaches_one_process_elbo(tmp_path):
    run = tmp_path / "two"
    done = vae_train([*TINY, "trainer.devices=2", f"hydra.run.dir={run}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "completed"
    one = trained_run(tmp_path / "one", TINY).summary
    assert one["processes"] == 1
    for key in ("elbo", "recon_nll", "kl"):
        assert summary[key] == pytest.approx(one[key], rel=1e-4, abs=1e-3), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


@pytest.mark.slow
def test_torchrun_without_a_run_dir_leaves_one_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vae_lab.train",
                           *TINY], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs" / "runs").glob("*/*")]
    assert len(runs) == 1, runs
    assert json.loads((runs[0] / "summary.json").read_text())["processes"] == 2
    assert done.stdout.count("run directory:") == 1


def logged(run_dir):
    try:
        return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except (FileNotFoundError, ValueError):
        return []


@pytest.mark.slow
def test_sigterm_stops_both_processes_once_and_the_run_resumes_exactly(tmp_path):
    longer = [*TINY, "trainer.devices=2", "dataset.binarize=dynamic", "trainer.max_steps=300", "trainer.epochs=100",
              "trainer.log_every=5", "trainer.eval_every=50", "trainer.checkpoint_every=50"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = subprocess.Popen(["vae-train", *longer, f"hydra.run.dir={stopped}"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not logged(stopped) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] < 300, summary
    assert err.count(f"continue with: vae-train resume={stopped}") == 1
    assert not list(stopped.glob("checkpoints/*.tmp*"))

    on_one = tmp_path / "on_one"  # the same checkpoint, continued by one process
    shutil.copytree(stopped, on_one)
    for run, devices in ((stopped, 2), (on_one, 1)):
        done = vae_train([f"resume={run}", f"trainer.devices={devices}"], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    done = vae_train([*longer, f"hydra.run.dir={straight}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b, c = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (straight, stopped, on_one))
    assert a["step"] == b["step"] == c["step"] == 300
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
        # another number of processes sums in another order: float rounding, grown over the remaining steps
        torch.testing.assert_close(c["model"][name], value, rtol=1e-3, atol=1e-4)
    assert logged(stopped) == logged(straight)


@pytest.mark.slow
def test_a_bad_config_under_two_processes_is_one_line_and_leaves_no_process(tmp_path):
    marker = tmp_path / "bad-run"
    done = vae_train(["trainer.devices=2", "dataset=image_folder", f"dataset.path={tmp_path / 'nowhere'}",
                      f"hydra.run.dir={marker}"], tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("vae-train: error: dataset.path=") and "nowhere" in last, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    left = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


class SignalDuringAgreement:
    """A team of two whose agreement is in flight when this process's handler runs: the signal arrives during
    `agree` (as a SIGTERM can while all_gather_object waits for the other process), and the other process had none."""

    size, main = 2, True

    def __init__(self, stop):
        self.stop, self.delivered, self.seen = stop, False, []

    def agree(self, value):
        self.seen.append(value)
        if not self.delivered:
            self.delivered, self.stop.signal = True, "SIGTERM"  # what StopRequest's handler does
        return value


def test_a_signal_received_while_the_processes_agree_is_agreed_at_the_next_logging_step():
    """due() must not overwrite what the handler received with what the processes agreed before it: the first logging
    step agrees on None (the signal came mid-call), the next one on SIGTERM, and the run stops there."""
    from types import SimpleNamespace

    from vae_lab.runtime.interrupt import StopRequest
    from vae_lab.train import due

    stop = StopRequest()
    team = SignalDuringAgreement(stop)
    training = SimpleNamespace(state=SimpleNamespace(step=5), total=100, team=team, trainer=SimpleNamespace(
        log_every=5, eval_every=50, checkpoint_every=50, stop_at_step=None))
    first = due(training, stop, start_step=0)
    assert not first.stop and stop.signal == "SIGTERM"
    training.state.step = 7  # not a logging step: the processes do not talk, nobody stops yet
    assert not due(training, stop, start_step=0).stop
    training.state.step = 10
    second = due(training, stop, start_step=0)
    assert second.stop and second.signal == "SIGTERM" and second.save
    assert team.seen == [None, "SIGTERM"]


# Loaded by every Python process the test below starts (the spawned ones too, before vae_lab): a setup step that fails
# on rank 1 alone, as a GPU with less free memory, a file only one node lacks or a bug on one process would.
FAIL_ON_RANK_1 = '''
import os

def _fail_on_rank_1(module, name, error):
    def install():
        import importlib
        target = importlib.import_module(module)
        real = getattr(target, name)
        def fails_on_rank_1(*args, **kwargs):
            if os.environ.get("RANK") == "1":
                raise error
            return real(*args, **kwargs)
        setattr(target, name, fails_on_rank_1)
    return install

if os.environ.get("FAIL_ON_RANK_1"):
    from vae_lab.checks import ConfigError
    where, kind = os.environ["FAIL_ON_RANK_1"].split(":")
    error = ConfigError("latent_dim=10: does not fit this GPU") if kind == "config" else RuntimeError("disk on fire")
    module, name = where.rsplit(".", 1)
    _fail_on_rank_1(module, name, error)()
'''


@pytest.mark.slow
@pytest.mark.parametrize("where,kind,line", [
    # after the dataset is agreed, in this process's own model: rank 0 would go on to DistributedDataParallel
    ("vae_lab.runtime.build.check_fits", "config", "vae-train: error: latent_dim=10: does not fit this GPU"),
    # inside Team.first, on the processes that read what rank 0 built: rank 0 is past its broadcast
    ("vae_lab.data.sprites.render_patches", "runtime", "vae-train: error: dataset: RuntimeError: disk on fire"),
    # before it, any exception: rank 0 would wait in Team.first's collective
    ("vae_lab.train.seed_everything", "runtime", "vae-train: error: process 1: RuntimeError: disk on fire"),
])
def test_a_setup_failure_on_one_process_only_is_one_line_on_all(tmp_path, where, kind, line):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    marker = tmp_path / f"run-{kind}"
    env = {**os.environ, "FAIL_ON_RANK_1": f"{where}:{kind}",
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    started = time.time()
    done = vae_train([*TINY, "trainer.devices=2", f"hydra.run.dir={marker}"], tmp_path, env=env)
    assert time.time() - started < 120
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(line), done.stderr[-3000:]
    assert "Traceback" not in done.stderr.split("vae-train: error:")[-1]
    left = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True)
    assert left.stdout == "", left.stdout
    assert not list(marker.glob("events.out.tfevents.*")) and not (marker / "checkpoints").exists()


def discriminators_after_steps(root, steps):
    """FactorVAE's discriminator after `steps` steps on every process, rank 1's updates made to differ from rank 0's
    (a little noise on its logits: kernels that do not round alike)."""
    from helpers import SMALL, compose_config

    from vae_lab.train import batches, setup, train_step

    team = distributed.join(torch.device("cpu"))
    try:
        cfg = compose_config([*TINY, "penalty=factor_vae", *SMALL["factor_vae"], f"trainer.max_steps={steps}"])
        training = setup(cfg, root, team)
        if team.rank == 1:
            training.state.penalty.discriminator.register_forward_hook(lambda m, i, out: out + 1e-3 * torch.rand_like(out))
        for x in batches(training):
            train_step(training, x)
        return training.state.penalty.discriminator.state_dict()
    finally:
        distributed.leave()


@pytest.mark.slow
def test_the_discriminators_of_two_processes_stay_equal_by_construction(tmp_path):
    """Each process updates its copy of FactorVAE's discriminator (outside DistributedDataParallel) from the same
    global codes; their gradients are averaged before the step, so the copies stay equal even when the processes'
    own arithmetic differs."""
    out = distributed.launch(2, discriminators_after_steps, tmp_path / "run", 4)
    for name, value in out[0].items():
        assert torch.equal(value, out[1][name]), name


def test_the_processes_of_a_run_on_one_machine_share_its_memory_for_the_images():
    """The images' memory budget (dataset.resident=auto) is this process's share of the machine's: the processes of a
    run on one machine's CPU memory each hold a copy; on GPUs each has its own device."""
    assert Team().memory_share(torch.device("cpu")) == 1.0
    assert Team(1, 4, 1, 2).memory_share(torch.device("cpu")) == 0.5
    assert Team(1, 4, 1, 2).memory_share(torch.device("cuda", 1)) == 1.0
