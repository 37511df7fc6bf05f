"""Where the configs are, what they may hold, and the checks of the keys outside the config groups.

The schemas below (Hydra's structured configs: dataclasses of types, no defaults, which stay in the YAML files) say
which keys configs/config.yaml and configs/evaluate.yaml hold and of what type; OmegaConf checks them and each error
becomes one line naming the key. Ranges and choices are checked after that. Each config group's class checks its own
keys when it is built, so the groups are `Any` here.
"""
import dataclasses
import functools
import inspect
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from vae_lab.checks import DEVICES, ConfigError, choice, first_line, number, positive_int
from vae_lab.results import HEADLINE
from vae_lab.rundir import NOT_TRAINED, job_subdir

# configs/ at the repository root is the package vae_lab.configs (pyproject.toml's package-dir): the same files in an
# editable install and inside the wheel.
CONFIG_DIR = str(files("vae_lab.configs"))
# configs/hydra/launcher/joblib.yaml replaces the joblib plugin's config of that name, and Hydra 1.x checks it against
# the plugin's schema (the same keys) with a warning that it will stop doing so, in a sweep's process and in each of
# its workers (both import this module before they compose a config).
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/joblib' is validated against ConfigStore schema")
log = logging.getLogger("vae_lab")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def required():
    return field(default=MISSING)


@dataclass
class Loss:
    reduction: str = required()


@dataclass
class Trainer:
    epochs: int = required()
    max_steps: Optional[int] = required()
    batch_size: int = required()
    log_every: int = required()
    eval_every: int = required()
    checkpoint_every: int = required()
    stop_at_step: Optional[int] = required()
    precision: str = required()
    compile: bool = required()
    nonfinite: str = required()
    devices: int = required()


@dataclass
class Evaluation:
    max_images: Optional[int] = required()
    batch_size: int = required()
    iwae_k: int = required()
    decomposition_images: Optional[int] = required()
    collapse_patience: int = required()


@dataclass
class Settings:
    """configs/config.yaml's keys outside the config groups."""

    seed: int = required()
    latent_dim: int = required()
    device: str = required()
    threads: Any = required()  # auto or a number
    objective: str = required()
    data_dir: str = required()
    resume: Optional[str] = required()
    loss: Loss = field(default_factory=Loss)
    trainer: Trainer = field(default_factory=Trainer)
    eval: Evaluation = field(default_factory=Evaluation)


@functools.cache
def groups():
    """The config groups of configs/config.yaml's defaults list (experiment aside: it sets keys of the others)."""
    defaults = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "config.yaml"))["defaults"]
    return tuple(k for d in defaults if isinstance(d, dict) for k in d if k != "experiment")


@functools.cache
def train_schema():
    """configs/config.yaml, as composed: each group's option (checked by its class when it is built) and Settings."""
    return dataclasses.make_dataclass("TrainConfig", [(g, Any, required()) for g in groups()], bases=(Settings,))


@dataclass
class Iwae:
    k: int = required()
    images: Optional[int] = required()
    chunk: Any = required()  # auto or a number


@dataclass
class EvalConfig:
    """configs/evaluate.yaml: vae-eval's options."""

    run: Optional[str] = required()  # one of run, runs, sweep (checked by vae-eval's options)
    runs: Any = required()  # a list of run directories: UDR over them
    sweep: Optional[str] = required()  # a sweep directory: UDR over its runs
    checkpoint: str = required()
    max_images: Optional[int] = required()
    batch_size: int = required()
    seed: Optional[int] = required()
    device: str = required()
    iwae: Iwae = field(default_factory=Iwae)
    decomposition_images: Optional[int] = required()
    pictures: bool = required()
    metrics: Any = required()  # all, or a list of names, checked against the metrics' records
    metric_sizes: Any = required()  # quick | full | {metric: {size: value}}
    representation: str = required()  # mean | sampled | both


def check_schema(schema, cfg, required_hint):
    """ConfigError, one line naming the key, unless `cfg` has the keys of the dataclass `schema`, of their types;
    `required_hint` says where a missing key is set. Returns `cfg` merged into the schema (typed)."""
    _check_nesting(schema, OmegaConf.to_container(cfg), "")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except ConfigKeyError as e:
        parent, known = e.full_key.rpartition(".")[0], OmegaConf.structured(schema)
        node = OmegaConf.select(known, parent) if parent else known
        raise ConfigError(f"{e.full_key}: unknown key; known here: {', '.join(node.keys())}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key or 'config'}={OmegaConf.select(cfg, e.full_key) if e.full_key else ''}: "
                          f"{first_line(e)}") from None
    for key in sorted(OmegaConf.missing_keys(merged)):
        raise ConfigError(f"{key}: missing; it is required ({required_hint})")
    return merged


def _check_nesting(schema, node, prefix):
    """A mapping where the schema has one and a value where it has a value (OmegaConf's merge error names neither)."""
    for f in dataclasses.fields(schema):
        if f.name not in node:
            continue
        nested = dataclasses.is_dataclass(f.type) or f.default_factory is not dataclasses.MISSING
        key = f"{prefix}{f.name}"
        if nested and not isinstance(node[f.name], dict):
            first = dataclasses.fields(f.default_factory)[0].name
            raise ConfigError(f"{key}={node[f.name]}: {key} holds keys; set them one by one, e.g. {key}.{first}=...")
        if not nested and f.type is not Any and isinstance(node[f.name], dict):
            raise ConfigError(f"{key}={node[f.name]}: must be a value, not a mapping")
        if nested:
            _check_nesting(f.default_factory, node[f.name], f"{prefix}{f.name}.")


def register_resolvers():
    """The resolvers configs/config.yaml uses; called where an app starts, before Hydra composes a config."""
    resolvers = {"vae_lab.job_subdir": job_subdir, "vae_lab.not_in_dirname": lambda: ["seed", *NOT_TRAINED]}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def check_root(cfg):
    """The keys outside the config groups: the schema's types, then ranges and choices (checked on the values as
    given, so that `trainer.compile=yes` is not read as true)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key or 'config'}: {first_line(e)}") from None
    for group in groups():
        if not OmegaConf.is_dict(cfg.get(group)):
            raise ConfigError(f"{group}: missing; choose an option of the `{group}` group")
    check_schema(train_schema(), cfg, "see configs/config.yaml")
    positive_int("latent_dim", cfg.latent_dim)
    number("seed", cfg.seed, low=0, high=2**32 - 1, integer=True)  # numpy's limit
    choice("device", cfg.device, DEVICES)
    choice("loss.reduction", cfg.loss.reduction, ("sum", "mean"))
    choice("objective", cfg.objective, HEADLINE)
    t = cfg.trainer
    number("trainer.epochs", t.epochs, low=0, integer=True)
    if t.max_steps is not None:
        number("trainer.max_steps", t.max_steps, low=0, integer=True)
    if t.stop_at_step is not None:
        number("trainer.stop_at_step", t.stop_at_step, low=1, integer=True)
    choice("trainer.precision", t.precision, ("fp32", "bf16"))
    choice("trainer.compile", t.compile, (False, True))
    choice("trainer.nonfinite", t.nonfinite, ("stop", "skip"))
    for key in ("batch_size", "eval_every", "log_every", "checkpoint_every", "devices"):
        positive_int(f"trainer.{key}", t[key])
    if cfg.eval.max_images is not None:
        positive_int("eval.max_images", cfg.eval.max_images)
    positive_int("eval.batch_size", cfg.eval.batch_size)
    number("eval.iwae_k", cfg.eval.iwae_k, low=0, integer=True)
    if cfg.eval.decomposition_images is not None:
        positive_int("eval.decomposition_images", cfg.eval.decomposition_images)
    positive_int("eval.collapse_patience", cfg.eval.collapse_patience)


def check_optimizer_args(target, func, keywords):
    """The `optimizer` group is a partial of a torch.optim class: each value must have the type of that argument's
    default (a finite number, a list of them, a bool); torch checks the ranges when it is built."""
    defaults = inspect.signature(func).parameters
    for key, value in keywords.items():
        if key not in defaults:
            raise ConfigError(f"optimizer.{key}: unknown key for {target}")
        default = defaults[key].default
        if isinstance(default, tuple):
            if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != len(default):
                raise ConfigError(f"optimizer.{key}={value}: must be a list of {len(default)} numbers")
            for j, v in enumerate(value):
                number(f"optimizer.{key}[{j}]", v, low=-FLOAT32_MAX, high=FLOAT32_MAX)
        elif isinstance(default, bool):
            choice(f"optimizer.{key}", value, (False, True))
        elif default is None and "bool" in str(defaults[key].annotation):  # e.g. fused, foreach: None means auto
            choice(f"optimizer.{key}", value, (None, False, True))
        elif isinstance(default, (int, float)):
            number(f"optimizer.{key}", value, low=-FLOAT32_MAX, high=FLOAT32_MAX)  # torch computes in float32


def warn_mean_reduction(beta, pixels):
    """loss.reduction=mean: the KL weight it amounts to, relative to the ELBO, when that invites collapse."""
    effective = beta * pixels
    if effective > 10:
        log.warning("loss.reduction=mean divides log p(x|z) by %d pixels: relative to the ELBO the KL weight is "
                    "%.0f (beta %g x %d). Expect posterior collapse; loss.reduction=sum is the ELBO.",
                    pixels, effective, beta, pixels)
