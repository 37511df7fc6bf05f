"""A vae-train job inside a Hydra multirun: its directory name, its failure record, and the end-of-sweep report."""
import hashlib
import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from vae_lab.checks import ConfigError

log = logging.getLogger("vae_lab")

MAX_NAME = 240  # bytes; file systems allow 255 per path component


def job_subdir(name, seed):
    """`<overrides>/seed=<seed>`: one directory per experiment, one below it per seed (see configs/config.yaml).

    `name` is Hydra's override_dirname; "/" in values is escaped and over-long names end in a hash of the whole.
    """
    name = str(name).replace("/", "%2F")
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[: MAX_NAME - 12].decode(errors="ignore") + "-" + digest
    return f"{name}/seed={seed}" if name else f"seed={seed}"


if not OmegaConf.has_resolver("vae_lab.job_subdir"):
    OmegaConf.register_new_resolver("vae_lab.job_subdir", job_subdir)


def run_job(run, cfg, run_dir):
    """run(cfg) for one job of a sweep. Any exception is logged and recorded in the job's summary.json as
    {"status": "failed", "error": <one line>}, and the sweep goes on with its other jobs."""
    run_dir = Path(run_dir)
    fresh = not ((run_dir / "checkpoints").exists() or (run_dir / "summary.json").exists())
    try:
        return run(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep outlives any one job; KeyboardInterrupt still stops it
        error = str(e) if isinstance(e, ConfigError) else one_line(e)
        log.error("vae-train: job failed: %s", error, exc_info=not isinstance(e, ConfigError))
        summary = {"status": "failed", "error": error, "run_dir": str(run_dir)}
        if fresh and not (run_dir / "summary.json").exists():  # never over a directory that holds another run
            record_failure(run_dir, cfg, summary)
        return summary


def one_line(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def record_failure(run_dir, cfg, summary):
    from vae_lab.run_log import RunLog

    runlog = RunLog(run_dir)
    runlog.summary(summary)
    runlog.hparams(cfg, status="failed")
    runlog.close()


class SweepReport(Callback):
    """At the end of a multirun: how many jobs completed and failed, and the command that compares them."""

    def on_multirun_end(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = {}
        for path in sweep_dir.rglob(".hydra"):
            summary = path.parent / "summary.json"
            status = json.loads(summary.read_text()).get("status", "?") if summary.is_file() else "no summary.json"
            counts[status] = counts.get(status, 0) + 1
        if counts:
            line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            (log.warning if set(counts) - {"completed"} else log.info)(
                "sweep %s: %s; compare with: vae-compare %s", sweep_dir, line, sweep_dir)
