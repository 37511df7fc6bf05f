"""vae-train: the command around the training loop (vae_lab.train). Hydra composes the config; a job decides where it
trains (a new run, resume=, resume=auto), starts or joins the processes that train it (vae_lab.runtime.distributed),
runs the loop and reports."""
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.vae_lab_launcher import register_launchers
from vae_lab.checks import ConfigError, resolve_device
from vae_lab.results import HEADLINE
from vae_lab.rundir import Status
from vae_lab.runtime import distributed, resume, sweep
from vae_lab.runtime.config import CONFIG_DIR, check_root, register_resolvers
from vae_lab.runtime.stacked_launcher import STACK_KEY
from vae_lab.train import train, train_stacked

log = logging.getLogger("vae_lab")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg):
    hc = HydraConfig.get()
    if STACK_KEY in cfg:  # one stack of hydra/launcher=stacked: its members' figures
        return stack_job(cfg)
    if hc.mode == RunMode.MULTIRUN:  # a failed job is recorded in its summary.json; the sweep goes on
        summary = sweep.guarded_job(train_job, cfg, hc.runtime.output_dir)
    else:
        try:
            summary = train_job(cfg)
        except ConfigError as e:
            raise SystemExit(f"vae-train: error: {e}") from None
        if summary["status"] == Status.DIVERGED:
            raise SystemExit(f"vae-train: error: {summary['error']}")
    if summary["status"] in (Status.STOPPED, Status.INTERRUPTED):
        if distributed.fill_environment()[0] == 0:  # one message for a run of several processes
            print(f"vae-train: {summary['message']}", file=sys.stderr, flush=True)
        if summary["exit_code"]:  # 128 + the signal's number: ends a sweep too; stop_at_step lets it go on
            raise SystemExit(summary["exit_code"])
    return summary.get(cfg.objective)  # what a sweeper such as hydra/sweeper=optuna optimises


def main():
    """The vae-train command."""
    register_resolvers()
    register_launchers()  # Hydra's plugin scan misses them under an editable install
    hydra_main()


def train_job(cfg):
    """One vae-train job: where it trains, its processes, the loop, the report. With trainer.devices=N (and no
    launcher's ranks here) it starts N processes and waits for them; a launcher's rank (torchrun, Slurm) joins the
    others and trains with them in rank 0's run directory."""
    hc = HydraConfig.get()
    raw = OmegaConf.to_container(hc, resolve=False)  # as typed: an override may hold a broken ${...}
    launcher = OmegaConf.to_container(hc.launcher, resolve=True) if hc.launcher else None
    rank, size, _, local_size = distributed.fill_environment()
    own_dir = Path(hc.runtime.output_dir)

    def decide():
        return resume.resume_target(cfg, own_dir, raw["overrides"]["task"],
                                    resume.search_roots(raw["run"]["dir"], raw["sweep"]["dir"]))

    device = resolve_device(cfg.device)
    if size == 1 and cfg.trainer.devices > 1:
        check_root(cfg)
        distributed.check_batch(cfg.trainer.batch_size, cfg.trainer.devices)
        run_cfg, run_dir = decide()
        summary = distributed.launch_run(train, run_cfg, run_dir, launcher, device)
    else:
        if size > 1 and cfg.trainer.devices not in (1, local_size):
            raise ConfigError(f"trainer.devices={cfg.trainer.devices}: the launcher started {local_size} processes on "
                              f"this machine; leave trainer.devices at 1 or set it to {local_size}")
        summary = distributed.take_part(train, device, cfg.threads, launcher, decide, own_dir)
    if summary["status"] == Status.COMPLETED and rank == 0:
        report(summary)
    return summary


def stack_job(cfg):
    """One stack of a stacked sweep (vae_lab.runtime.stacked_launcher): its members' configs and run directories
    (each resuming its own unfinished run under resume=auto), trained together; each member's objective figure."""
    hc = HydraConfig.get()
    record = OmegaConf.to_container(OmegaConf.load(cfg[STACK_KEY]))
    launcher = OmegaConf.to_container(hc.launcher, resolve=True) if hc.launcher else None
    roots = resume.search_roots(hc.run.dir, hc.sweep.dir)

    def decide():
        targets = [resume.resume_target(OmegaConf.load(Path(d) / ".hydra" / "config.yaml"), Path(d), overrides, roots)
                   for d, overrides in zip(record["members"], record["overrides"])]
        return [c for c, _ in targets], [d for _, d in targets]

    def loop(cfgs, run_dirs, team):
        with member_logs(run_dirs):
            return train_stacked(cfgs, run_dirs, record)

    summaries = sweep.guarded_stack(lambda: distributed.take_part(loop, resolve_device(cfg.device), cfg.threads,
                                                                  launcher, decide, hc.runtime.output_dir),
                                    record["members"], record["overrides"])
    for summary in summaries:
        if summary["status"] == Status.COMPLETED:
            report(summary)
    if interrupted := [s for s in summaries if s["status"] in (Status.STOPPED, Status.INTERRUPTED)]:
        print(f"vae-train: stack {record['id']}: {interrupted[0]['message']} (and its other members)",
              file=sys.stderr, flush=True)
        if interrupted[0]["exit_code"]:
            raise SystemExit(interrupted[0]["exit_code"])
    return [summary.get(cfg.objective) for summary in summaries]


@contextmanager
def member_logs(run_dirs):
    """The stack's log written to each member's train.log too, as Hydra writes a lone run's."""
    root = logging.getLogger()
    like = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    handlers = [logging.FileHandler(Path(d) / "train.log") for d in run_dirs]
    for h in handlers:
        h.setFormatter(like.formatter if like else logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


def report(summary):
    print(f"run directory: {summary['run_dir']}")
    print("validation:", "  ".join(f"{k} {summary[k]:.3f}" if isinstance(summary[k], float) else f"{k} {summary[k]}"
                                    for k in HEADLINE if summary[k] is not None), "(nats per image)")
    print(f"{summary['steps']} steps, {summary['images_per_s']:.0f} images/s, {summary['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
