"""A vae-train job inside a Hydra multirun: its failure record, and the end-of-sweep report (the job's directory
name: vae_lab.rundir.job_subdir)."""
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from vae_lab import rundir
from vae_lab.checks import ConfigError, first_line
from vae_lab.rundir import Status
from vae_lab.runtime.logbook import Logbook
from vae_lab.runtime.stack import MANIFEST

log = logging.getLogger("vae_lab")


def guarded_job(job, cfg, run_dir):
    """job(cfg) for one job of a sweep. Any exception is logged and recorded in the job's summary.json as
    {"status": "failed", "error": <one line>}, and the sweep goes on with its other jobs."""
    run_dir = Path(run_dir)
    fresh = rundir.is_fresh(run_dir)
    try:
        return job(cfg)
    except Exception as e:  # a sweep outlives any one job; KeyboardInterrupt still stops it
        error = str(e) if isinstance(e, ConfigError) else first_line(e, with_type=True)
        log.error("vae-train: job failed: %s", error, exc_info=not isinstance(e, ConfigError))
        summary = {"status": Status.FAILED, "error": error, "run_dir": str(run_dir)}
        if fresh and not (run_dir / rundir.SUMMARY).exists():  # never over a directory that holds another run
            record_failure(run_dir, cfg, summary)
        return summary


def guarded_stack(job, run_dirs, overrides):
    """job() -> the summaries of a stack's members (hydra/launcher=stacked). Any exception is logged and recorded in
    each member's summary.json, as guarded_job records one job's, and the sweep goes on with its other stacks."""
    try:
        return job()
    except Exception as e:
        error = str(e) if isinstance(e, ConfigError) else first_line(e, with_type=True)
        log.error("vae-train: stack failed: %s", error, exc_info=not isinstance(e, ConfigError))
        summaries = []
        for run_dir in map(Path, run_dirs):
            summary = {"status": Status.FAILED, "error": error, "run_dir": str(run_dir)}
            if rundir.is_fresh(run_dir) and not (run_dir / rundir.SUMMARY).exists():
                record_failure(run_dir, OmegaConf.load(run_dir / ".hydra" / "config.yaml"), summary)
            summaries.append(summary)
        return summaries


def record_failure(run_dir, cfg, summary):
    logbook = Logbook(run_dir)
    logbook.summary(summary)
    logbook.hparams(cfg, status=Status.FAILED)
    logbook.close()


class SweepReport(Callback):
    """At the end of a multirun: how many jobs completed and failed, and the command that compares them."""

    def on_multirun_end(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = {}
        for path in sweep_dir.rglob(".hydra"):
            if (path.parent / MANIFEST).exists():  # a stack's own job (hydra/launcher=stacked): its members are counted
                continue
            status = rundir.status(path.parent) or "no summary.json"
            counts[str(status)] = counts.get(str(status), 0) + 1
        if counts:
            line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            (log.warning if set(counts) - {Status.COMPLETED.value} else log.info)(
                "sweep %s: %s; compare with: vae-compare %s", sweep_dir, line, sweep_dir)
