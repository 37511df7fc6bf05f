"""A vae-train job inside a Hydra multirun: its directory name, its failure record, and the end-of-sweep report."""
import hashlib
import logging
from pathlib import Path

from hydra.experimental.callback import Callback

from vae_lab import rundir
from vae_lab.checks import ConfigError, first_line
from vae_lab.rundir import Status

log = logging.getLogger("vae_lab")

MAX_NAME = 240  # bytes; file systems allow 255 per path component


def job_subdir(name, seed):
    """`<overrides>/seed=<seed>`: one directory per experiment, one below it per seed (see configs/config.yaml).

    `name` is Hydra's override_dirname; "/" in values is escaped and over-long names end in a hash of the whole.
    """
    name = str(name).replace("/", "%2F")
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]
        name = name.encode()[: MAX_NAME - 12].decode(errors="ignore") + "-" + digest
    return f"{name}/seed={seed}" if name else f"seed={seed}"


def run_job(run, cfg, run_dir):
    """run(cfg) for one job of a sweep. Any exception is logged and recorded in the job's summary.json as
    {"status": "failed", "error": <one line>}, and the sweep goes on with its other jobs."""
    run_dir = Path(run_dir)
    fresh = not ((run_dir / "checkpoints").exists() or (run_dir / rundir.SUMMARY).exists())
    try:
        return run(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep outlives any one job; KeyboardInterrupt still stops it
        error = str(e) if isinstance(e, ConfigError) else first_line(e, with_type=True)
        log.error("vae-train: job failed: %s", error, exc_info=not isinstance(e, ConfigError))
        summary = {"status": Status.FAILED, "error": error, "run_dir": str(run_dir)}
        if fresh and not (run_dir / rundir.SUMMARY).exists():  # never over a directory that holds another run
            record_failure(run_dir, cfg, summary)
        return summary


def record_failure(run_dir, cfg, summary):
    from vae_lab.runtime.logbook import RunLog

    runlog = RunLog(run_dir)
    runlog.summary(summary)
    runlog.hparams(cfg, status=Status.FAILED)
    runlog.close()


class SweepReport(Callback):
    """At the end of a multirun: how many jobs completed and failed, and the command that compares them."""

    def on_multirun_end(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = {}
        for path in sweep_dir.rglob(".hydra"):
            status = rundir.status(path.parent) or "no summary.json"
            counts[str(status)] = counts.get(str(status), 0) + 1
        if counts:
            line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            (log.warning if set(counts) - {Status.COMPLETED.value} else log.info)(
                "sweep %s: %s; compare with: vae-compare %s", sweep_dir, line, sweep_dir)
