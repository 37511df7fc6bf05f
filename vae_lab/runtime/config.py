"""Where the configs are, which keys do not change what is trained, and the checks of the keys outside the groups.

Each config group's class checks its own keys when it is built; this module checks the rest of configs/config.yaml.
"""
import inspect
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_lab.checks import ConfigError, choice, first_line, number, positive_int

# configs/ at the repository root is the package vae_lab.configs (pyproject.toml's package-dir): the same files in an
# editable install and inside the wheel.
CONFIG_DIR = str(files("vae_lab.configs"))

# Keys that say how, where or how often a run is carried out, not what is trained. One list for: sweep directory
# names (with the seed, which has its own level there), matching a config when resuming, and the HParams tab.
NOT_TRAINED = ("resume", "device", "threads", "objective", "data_dir", "trainer.log_every", "trainer.eval_every",
               "trainer.checkpoint_every", "trainer.stop_at_step", "eval.batch_size")

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
OBJECTIVES = ("elbo", "recon_nll", "kl", "bits_per_dim", "active_units")  # summary figures a sweeper can optimise


def register_resolvers():
    """The resolvers configs/config.yaml uses; called where an app starts, before Hydra composes a config."""
    from vae_lab.runtime.sweep import job_subdir

    resolvers = {"vae_lab.job_subdir": job_subdir, "vae_lab.not_in_dirname": lambda: ["seed", *NOT_TRAINED]}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def check_root(cfg):
    """Keys outside the config groups; each group's class checks its own keys."""
    check_keys(cfg)
    positive_int("latent_dim", cfg.latent_dim)
    number("seed", cfg.seed, low=0, high=2**32 - 1, integer=True)  # numpy's limit
    choice("device", cfg.device, ("auto", "cpu", "cuda"))
    choice("loss.reduction", cfg.loss.reduction, ("sum", "mean"))
    choice("objective", cfg.objective, OBJECTIVES)
    t = cfg.trainer
    number("trainer.epochs", t.epochs, low=0, integer=True)
    if t.max_steps is not None:
        number("trainer.max_steps", t.max_steps, low=0, integer=True)
    if t.stop_at_step is not None:
        number("trainer.stop_at_step", t.stop_at_step, low=1, integer=True)
    choice("trainer.precision", t.precision, ("fp32", "bf16"))
    choice("trainer.compile", t.compile, (False, True))
    choice("trainer.nonfinite", t.nonfinite, ("stop", "skip"))
    for key in ("batch_size", "eval_every", "log_every", "checkpoint_every"):
        positive_int(f"trainer.{key}", t[key])
    if cfg.eval.max_images is not None:
        positive_int("eval.max_images", cfg.eval.max_images)
    positive_int("eval.batch_size", cfg.eval.batch_size)
    number("eval.iwae_k", cfg.eval.iwae_k, low=0, integer=True)
    if cfg.eval.decomposition_images is not None:
        positive_int("eval.decomposition_images", cfg.eval.decomposition_images)
    positive_int("eval.collapse_patience", cfg.eval.collapse_patience)


def check_keys(cfg):
    """Keys outside the config groups are those of configs/config.yaml (a misspelt `+key=` is not ignored, a
    deleted `~key` is not a traceback), and every interpolation resolves."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key or 'config'}: {first_line(e)}") from None
    base = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "config.yaml"))
    groups = {k for d in base.pop("defaults") if isinstance(d, dict) for k in d}
    base.pop("hydra")

    def walk(node, known, prefix):
        for key in node.keys() - known.keys() - (groups if not prefix else set()):
            raise ConfigError(f"{prefix}{key}: unknown key; known here: {', '.join(known)}")
        for key in known.keys() - node.keys():
            raise ConfigError(f"{prefix}{key}: missing; it is required (see configs/config.yaml)")
        for key, value in known.items():
            if isinstance(value, dict) != isinstance(node[key], dict):
                raise ConfigError(f"{prefix}{key}={node[key]}: must be {'a mapping' if isinstance(value, dict) else 'a value'}")
            if isinstance(value, dict):
                walk(node[key], value, f"{prefix}{key}.")
    walk(OmegaConf.to_container(cfg), base, "")
    for group in groups - {"experiment"}:
        if group not in cfg:
            raise ConfigError(f"{group}: missing; choose an option of the `{group}` group")


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
