"""`vae-train -m` through each launcher and sweeper: job directories, failed jobs, threads, HParams, the Slurm and
joblib configs, a joblib sweep stopped by a signal."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vae_lab import rundir
from vae_lab.checks import ConfigError
from vae_lab.runtime import interrupt, sweep, threads
from vae_lab.runtime.config import CONFIG_DIR


def multirun(args, sweep_dir):
    out = subprocess.run(["vae-train", "-m", *TINY, *args, f"hydra.sweep.dir={sweep_dir}"],
                         capture_output=True, text=True, timeout=300, cwd=sweep_dir.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def summaries(sweep_dir):
    """{job directory below the sweep: summary.json}, for every job directory (.hydra) of the sweep."""
    return {p.parent.relative_to(sweep_dir).as_posix(): json.loads((p.parent / "summary.json").read_text())
            for p in sweep_dir.rglob(".hydra")}


def job(sweep_dir, override):
    """summary.json of the one job that had `override` on its command line."""
    [path] = [p.parent for p in sweep_dir.rglob(".hydra") if override in yaml.safe_load((p / "overrides.yaml").read_text())]
    return json.loads((path / "summary.json").read_text())


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """A sweep through Hydra's basic launcher: the first job diverges (loss nan), the second fails (torch's Adam
    refuses lr=-1), the third completes."""
    sweep_dir = tmp_path_factory.mktemp("basic") / "sweep"
    out = multirun(["optimizer.lr=1e30,-1,1e-3", "kl.beta=2", "seed=3"], sweep_dir)
    return sweep_dir, out


@pytest.mark.slow
def test_jobs_are_named_by_their_overrides_then_seed(basic_sweep):
    sweep_dir, _ = basic_sweep
    names = sorted(summaries(sweep_dir))
    assert len(names) == 3
    for name in names:
        experiment, seed = name.split("/")
        assert seed == "seed=3" and "kl.beta=2,latent_dim=4,optimizer.lr=" in experiment
        assert "trainer.max_steps=6" in experiment and "trainer.log_every" not in experiment  # excluded key
    assert (sweep_dir / "multirun.yaml").is_file()


@pytest.mark.slow
def test_a_failed_job_is_recorded_and_the_sweep_goes_on(basic_sweep):
    sweep_dir, out = basic_sweep
    diverged, bad, good = (job(sweep_dir, f"optimizer.lr={lr}") for lr in ("1e+30", "-1", "0.001"))
    assert diverged["status"] == "diverged" and diverged["error"].startswith("training diverged at step")
    assert "Lower optimizer.lr" in diverged["error"]
    assert bad["status"] == "failed" and bad["error"].startswith("optimizer: Invalid learning rate: -1")
    assert good["status"] == "completed" and good["steps"] == 6
    assert "1 completed, 1 diverged, 1 failed; compare with: vae-compare" in out.stdout + out.stderr


@pytest.mark.slow
def test_jobs_stopped_by_stop_at_step_do_not_end_the_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    multirun(["trainer.stop_at_step=3", "kl.beta=1,4"], sweep_dir)
    assert sorted((s["status"], s["steps"]) for s in summaries(sweep_dir).values()) == [("stopped", 3)] * 2


@pytest.mark.slow
def test_vae_compare_reads_the_sweep(basic_sweep):
    sweep_dir, _ = basic_sweep
    out = subprocess.run(["vae-compare", str(sweep_dir), "--sort", "elbo", "--desc"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    header, _, good, *bad, footer, rd = out.stdout.splitlines()
    assert header.split()[:3] == ["optimizer.lr", "status", "val/elbo"]
    assert good.split()[:2] == ["0.001", "completed"] and float(good.split()[2]) < 0
    assert {tuple(b.split()[:2]) for b in bad} == {("1e+30", "diverged"), ("-1", "failed")}
    assert any("Lower optimizer.lr" in b for b in bad) and any("Invalid learning rate" in b for b in bad)
    assert footer == "3 runs: 1 completed, 1 diverged, 1 failed"
    assert rd == f"wrote {sweep_dir / 'rate_distortion.png'}" and (sweep_dir / "rate_distortion.png").is_file()


@pytest.mark.slow
def test_each_run_is_one_hparams_session(basic_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    sessions = {}
    jobs = list(basic_sweep[0].rglob(".hydra"))
    assert len(jobs) == 3
    for p in jobs:
        acc = EventAccumulator(str(p.parent))
        acc.Reload()
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        assert metadata.EXPERIMENT_TAG not in content  # the tab takes the union of every run's hyper-parameters
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        hp = {k: v.number_value if v.WhichOneof("kind") == "number_value" else v.string_value
              for k, v in start.hparams.items()}
        sessions[hp["optimizer.lr"]] = (hp, end.status)
    assert set(sessions) == {1e30, -1, 1e-3}
    hp, status = sessions[1e-3]
    assert hp["kl.beta"] == 2 and hp["latent_dim"] == 4 and hp["seed"] == 3
    assert hp["encoder"] == "mlp" and hp["kl"] == "constant" and hp["encoder.hidden"] == "[32]"
    assert "data_dir" not in hp and "trainer.log_every" not in hp
    assert status == 1 and sessions[1e30][1] == sessions[-1][1] == 2  # STATUS_SUCCESS, STATUS_FAILURE


@pytest.mark.slow
def test_joblib_jobs_share_the_cores(tmp_path):
    sweep_dir = tmp_path / "sweep"
    multirun(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "kl.beta=1,4"], sweep_dir)
    sums = summaries(sweep_dir)
    assert [s["status"] for s in sums.values()] == ["completed"] * 2
    expected = max(threads.cores() // 2, 1)
    logs = list(sweep_dir.rglob("train.log"))
    assert len(logs) == 2, logs  # one per job
    for log in logs:
        assert f"torch threads: {expected} ({threads.cores()} cores / 2 parallel jobs)" in log.read_text()


@pytest.mark.slow
def test_joblib_sweep_on_the_installed_command_from_any_directory(tmp_path):
    """The README's install (editable) and command, outside the repository and with no PYTHONPATH (the one conftest
    sets for the other tests would hide it): Hydra's scan of hydra_plugins cannot list an editable install's
    vae_lab_launcher, and vae-train must still find hydra/launcher=joblib's class."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    vae_train = Path(sys.executable).parent / "vae-train"  # the environment's command, as a user runs it
    sweep_dir = tmp_path / "sweep"
    out = subprocess.run([str(vae_train), "-m", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                          f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s["status"] for s in summaries(sweep_dir).values()] == ["completed"] * 2


@pytest.mark.slow
def test_submitit_local_records_a_bad_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    multirun(["hydra/launcher=submitit_local", "latent_dim=4,-1"], sweep_dir)
    assert job(sweep_dir, "latent_dim=4")["status"] == "completed"
    bad = job(sweep_dir, "latent_dim=-1")
    assert bad["status"] == "failed" and bad["error"] == "latent_dim=-1: must be an integer >= 1"


@pytest.mark.slow
def test_optuna_searches_in_memory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    multirun(["hydra/sweeper=optuna_elbo", "hydra.sweeper.n_trials=2"], sweep_dir)
    sums = summaries(sweep_dir)
    assert len(sums) == 2 and all(s["status"] == "completed" for s in sums.values())
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"kl.beta", "optimizer.lr"}
    assert result["best_value"] == pytest.approx(max(s["elbo"] for s in sums.values()))


def test_slurm_launcher_config():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.cpus_per_task == 8 and launcher.gpus_per_node == 1
    assert threads.threads_for(launcher, 64) == (8, "hydra.launcher.cpus_per_task")


# pytest undoes the warning filter vae_lab.runtime.config sets when it imports it; the sweep below checks that
# vae-train's own output has no such warning
@pytest.mark.filterwarnings("ignore:\\s*'hydra/launcher/joblib' is validated against ConfigStore schema")
def test_joblib_launcher_config():
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.vae_lab_launcher.JoblibLauncher"
    assert set(launcher) == {f.name for f in dataclasses.fields(JobLibLauncherConf)}  # every key of Hydra's, no other
    assert threads.threads_for(launcher, 8)[0] == 4


def test_a_signal_forwarded_by_the_sweep_and_its_copy_are_one_request(tmp_path, monkeypatch):
    """Ctrl-C reaches a joblib worker twice, from the terminal and from the sweep's process: it stops once."""
    monkeypatch.setattr(interrupt.tempfile, "gettempdir", lambda: str(tmp_path))
    parent = interrupt.SweepSignal(12345)
    parent.open()
    monkeypatch.setattr(interrupt, "sweep_parent", parent)
    with interrupt.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # the terminal's copy, before the sweep's process has recorded it
        time.sleep(0.01)
        parent.record("SIGINT")
        os.kill(os.getpid(), signal.SIGINT)  # the sweep's process forwards it
        time.sleep(0.01)
        assert stop.signal == "SIGINT" and stop.exit_code == 130
    with interrupt.StopRequest() as stop:  # a job that reaches its loop after the sweep was told to stop
        assert stop.signal == "SIGINT"
    parent.close()
    with interrupt.StopRequest() as stop, pytest.raises(SystemExit):  # no sweep record: a second signal exits
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


def process_group(pgid):
    """Live processes (zombies aside) of process group `pgid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_sigterm_to_a_joblib_sweep_stops_its_jobs_and_resume_auto_finishes_it(tmp_path):
    """`kill <pid>` of a joblib sweep: every job it had started checkpoints and ends interrupted, no other starts nor
    makes a folder, no process is left; the same command with resume=auto finishes all of them."""
    sweep_dir = tmp_path / "sweep"
    # 60 steps: long after the first checkpoint (step 5) for the signal to find a job still training
    command = ["vae-train", "-m", *TINY, "trainer.max_steps=60", "trainer.epochs=8", "trainer.checkpoint_every=5",
               "trainer.log_every=30", "trainer.eval_every=30", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "kl.beta=1,2,4", f"hydra.sweep.dir={sweep_dir}"]
    # its own session: the group it leads is its workers and nothing else, to look for once it has ended
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not list(sweep_dir.rglob("last.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as soon as one job has trained: the other may be training, starting, or not
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "ConfigStore schema" not in err  # Hydra's warning about configs/hydra/launcher/joblib.yaml, filtered
    started = {p.parent: json.loads((p.parent / "summary.json").read_text()) for p in sweep_dir.rglob(".hydra")}
    assert 1 <= len(started) <= 2  # two workers; the third job waited for one
    assert {(s["status"], s["signal"]) for s in started.values()} == {("interrupted", "SIGTERM")}
    assert all((run / "checkpoints" / "last.pt").is_file() for run in started)
    assert err.splitlines()[-1] == (f"vae-train: SIGTERM: sweep stopped; {len(started)} of 3 jobs had started (a "
                                    f"running one wrote a checkpoint and ended interrupted), {3 - len(started)} never "
                                    f"did; finish the sweep with the same command and resume=auto")
    deadline = time.time() + 30
    while process_group(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not process_group(proc.pid)
    assert not (Path(interrupt.tempfile.gettempdir()) / f"vae_lab-sweep-{proc.pid}").exists()

    again = subprocess.run([*command, "resume=auto"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    finished = summaries(sweep_dir)
    assert len(finished) == 3 and {(s["status"], s["steps"]) for s in finished.values()} == {("completed", 60)}
    for run in started:
        assert f"resume=auto: continuing {run}" in again.stdout + again.stderr


@pytest.mark.parametrize("n_jobs,cores,expected", [(2, 2, 1), (-1, 8, 1), (2, 8, 4), (-2, 8, 1), (3, 2, 1)])
def test_joblib_threads(n_jobs, cores, expected):
    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                                 "n_jobs": n_jobs})
    assert threads.threads_for(launcher, cores)[0] == expected


def test_threads_setting():
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1
        assert threads.set_threads("auto", None) == 1  # the basic launcher keeps what torch has
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads=0: must be an integer >= 1"):
        threads.set_threads(0)
    with pytest.raises(ConfigError, match="threads='many': must be auto or a positive integer"):
        threads.set_threads("many")


def test_guarded_job_records_any_exception(tmp_path):
    def boom(cfg):
        raise RuntimeError("CUDA out of memory\nmore detail")

    cfg = OmegaConf.create({"seed": 0, "latent_dim": 2})
    assert sweep.guarded_job(boom, cfg, tmp_path)["status"] == "failed"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "RuntimeError: CUDA out of memory"


def test_guarded_job_never_writes_over_another_run(tmp_path):
    (tmp_path / "summary.json").write_text('{"status": "completed"}')

    def refuses(cfg):
        raise ConfigError("hydra.run.dir: holds another run already")

    assert sweep.guarded_job(refuses, OmegaConf.create({}), tmp_path)["status"] == "failed"
    assert json.loads((tmp_path / "summary.json").read_text()) == {"status": "completed"}


@pytest.mark.parametrize("name,seed,expected", [
    ("kl.beta=4,latent_dim=2", 0, "kl.beta=4,latent_dim=2/seed=0"),
    ("", 7, "seed=7"),
    ("dataset.root=/data/x", 1, "dataset.root=%2Fdata%2Fx/seed=1"),
])
def test_job_subdir(name, seed, expected):
    assert rundir.job_subdir(name, seed) == expected


def test_long_job_names_fit_the_file_system():
    a, b = (rundir.job_subdir("encoder.hidden=[" + ",".join(["512"] * 80) + f"],kl.beta={v}", 0) for v in (1, 2))
    assert a != b and all(len(p.split("/")[0].encode()) <= rundir.MAX_NAME < 256 for p in (a, b))
