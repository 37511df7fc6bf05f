"""A run directory on disk: what vae-train, vae-eval, resume and vae-compare read and write there.

    <run>/.hydra/config.yaml, overrides.yaml, hydra.yaml   the composed config, the command line, Hydra's own
    <run>/summary.json    the final status and validation figures (vae-train)
    <run>/eval.json       the test-split figures (vae-eval)
    <run>/metrics.jsonl   one line per validation; <run>/checkpoints/{last,best}.pt; TensorBoard events
"""
import enum
import json
import math
import os
import tempfile
from pathlib import Path

from vae_lab.checks import ConfigError, first_line


class Status(str, enum.Enum):
    """A run's `status` in summary.json. A str, so it is written and compared as its value."""

    COMPLETED = "completed"  # trained to the end and validated
    STOPPED = "stopped"  # trainer.stop_at_step: a resumable checkpoint, to be continued
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM: a resumable checkpoint, to be continued
    DIVERGED = "diverged"  # a non-finite loss, gradient, parameter or validation figure
    FAILED = "failed"  # a job of a sweep that raised (a bad value, any exception)

    def __str__(self):
        return self.value

    @property
    def final(self):
        """Whether the run has ended for good (resume=auto does not continue it; its HParams session is written)."""
        return self not in (Status.STOPPED, Status.INTERRUPTED)


CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"  # the command line's overrides, as typed
HYDRA = Path(".hydra") / "hydra.yaml"  # Hydra's own config: runtime.choices names the option of each group
SUMMARY, EVAL = "summary.json", "eval.json"


def is_run(path):
    return (Path(path) / CONFIG).is_file()


def config(run_dir, key="run"):
    """The composed config the run was started with (OmegaConf); ConfigError naming `key` if there is none."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{key}={run_dir}: not a vae_lab run directory (no {path})")
    try:
        return OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - any damage to the file is the same one-line error
        raise ConfigError(f"{path}: not a readable config ({first_line(e)})") from None


def read_yaml(path):
    """A YAML file as plain data (None if it does not exist): libyaml's safe loader when there is one, as vae-compare
    reads hundreds of runs."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path) as f:
            return yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader, C or Python
    except FileNotFoundError:
        return None


def read_json(path):
    """A JSON file as a dict; None if it does not exist; {"status": "unreadable", "error": ...} if it is damaged."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"status": "unreadable", "error": f"{Path(path).name}: {first_line(e)}"}
    return value if isinstance(value, dict) else {"status": "unreadable", "error": f"{Path(path).name}: not an object"}


def summary(run_dir):
    return read_json(Path(run_dir) / SUMMARY)


def status(run_dir):
    """The status in summary.json (a Status, or the text found there), or None while the run has none."""
    found = summary(run_dir)
    if found is None:
        return None
    value = found.get("status", "unknown")
    return Status(value) if value in Status._value2member_map_ else value


def json_safe(value):
    """JSON has no NaN or Infinity: such values, at any depth, become strings ("nan", "inf") so the file stays
    valid JSON (a diverged run's kl_per_dim holds them)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def write_json(path, values):
    """`values` as JSON, atomically."""
    write_atomic(path, lambda f: f.write((json.dumps(json_safe(values), indent=2) + "\n").encode()))


def write_text(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


def write_atomic(path, write):
    """Call write(binary file) so that a kill at any instant leaves either the old file at `path` or the new one:
    a temporary file beside it, flushed and fsynced, renamed over it, and the directory fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
