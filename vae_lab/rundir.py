"""A run directory on disk: what vae-train, vae-eval, resume and vae-compare read and write there, and its name.

    <run>/.hydra/config.yaml, overrides.yaml, hydra.yaml   the composed config, the command line, Hydra's own
    <run>/summary.json    the final status and validation measurements (vae-train; keys: vae_lab.results)
    <run>/eval.json       the test-split measurements (vae-eval; keys: vae_lab.results)
    <run>/metrics.jsonl   one line per validation; <run>/checkpoints/{last,best}.pt; TensorBoard events
    <run>/figures/*.png   the pictures of the model (vae_lab.measure.pictures)

Torch-free, like everything vae-compare imports.
"""
import enum
import hashlib
import inspect
import json
import math
import os
import tempfile
from pathlib import Path

from vae_lab.checks import ConfigError, first_line
from vae_lab.nested import map_leaves


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
SUMMARY, EVAL, METRICS = "summary.json", "eval.json", "metrics.jsonl"
CHECKPOINTS, FIGURES = "checkpoints", "figures"
LAST, BEST = "last", "best"  # the checkpoints: the latest, and the one of the best validation ELBO

# Keys that say how, where or how often a run is carried out, not what is trained. One list for: sweep directory
# names (with the seed, which has its own level there), matching a config when resuming, and the HParams tab.
NOT_TRAINED = ("resume", "device", "threads", "objective", "data_dir", "trainer.log_every", "trainer.eval_every",
               "trainer.checkpoint_every", "trainer.stop_at_step", "trainer.devices", "eval.batch_size")
MAX_NAME = 240  # bytes of a sweep job's directory name; file systems allow 255 per path component


def checkpoint(run_dir, which=LAST):
    """<run>/checkpoints/<which>.pt"""
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def is_fresh(run_dir):
    """Holds no run yet: no checkpoint and no summary (Hydra's .hydra/ and a log may be there already)."""
    return not ((Path(run_dir) / CHECKPOINTS).exists() or (Path(run_dir) / SUMMARY).exists())


def job_subdir(name, seed):
    """`<overrides>/seed=<seed>`: one directory per experiment of a sweep, one below it per seed (configs/config.yaml).

    `name` is Hydra's override_dirname; "/" in values is escaped and over-long names end in a hash of the whole.
    """
    name = str(name).replace("/", "%2F")
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]
        name = name.encode()[: MAX_NAME - 12].decode(errors="ignore") + "-" + digest
    return f"{name}/seed={seed}" if name else f"seed={seed}"


def is_run(path):
    return (Path(path) / CONFIG).is_file()


def config(run_dir, key="run"):
    """The composed config the run was started with (OmegaConf); ConfigError naming `key` if there is none."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{key}={run_dir}: not a vae_lab run directory (no {path})")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # any damage to the file is the same one-line error
        raise ConfigError(f"{path}: not a readable config ({first_line(e)})") from None
    return with_split_seed(cfg)


def with_split_seed(cfg):
    """`cfg` with dataset.split_seed = "${dataset.seed}" where its dataset's class takes a split_seed that the config
    does not hold: a run saved before the key existed drew its split with dataset.seed, and is scored and resumed on
    that split (today's default, 0, would put its training images in its test split). Imports that class (and torch)
    to read its parameters: vae-eval and resume, which build it next, are the callers; vae-compare reads no config so."""
    from hydra.utils import get_object

    dataset = cfg.get("dataset")
    if not hasattr(dataset, "keys") or "split_seed" in dataset or "seed" not in dataset:
        return cfg
    try:
        takes = "split_seed" in inspect.signature(get_object(dataset._target_)).parameters
    except Exception:  # no _target_, or one that does not import: building the dataset says so in one line
        return cfg
    if takes:
        dataset.split_seed = "${dataset.seed}"
    return cfg


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
    return map_leaves(lambda v: str(v) if isinstance(v, float) and not math.isfinite(v) else v, value)


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
