"""vae-train: the command around the training loop (vae_lab.train). Hydra composes the config; a job decides where it
trains (a new run, resume=, resume=auto), starts or joins the processes that train it (vae_lab.runtime.distributed),
runs the loop and reports."""
import logging
import sys
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
from vae_lab.train import train

log = logging.getLogger("vae_lab")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg):
    hc = HydraConfig.get()
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


def report(summary):
    print(f"run directory: {summary['run_dir']}")
    print("validation:", "  ".join(f"{k} {summary[k]:.3f}" if isinstance(summary[k], float) else f"{k} {summary[k]}"
                                    for k in HEADLINE if summary[k] is not None), "(nats per image)")
    print(f"{summary['steps']} steps, {summary['images_per_s']:.0f} images/s, {summary['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
