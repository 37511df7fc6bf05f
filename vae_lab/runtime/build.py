"""Instantiate config groups through Hydra's `_target_`, turning a bad value into one line naming its key."""
import inspect
import logging
import re

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from vae_lab.checks import ConfigError, first_line
from vae_lab.model import VAE, Terms
from vae_lab.priors import MC_KL_NOTE
from vae_lab.runtime.config import check_optimizer_args
from vae_lab.runtime.resources import check_fits

log = logging.getLogger("vae_lab")


def build(group, node, optional=None, **runtime):
    """instantiate(node, **runtime); a ConfigError raised by the class comes back prefixed with `group`.
    `optional` run-time values are passed only to a class whose constructor takes them: steps_per_epoch to the
    `scheduler` group, whose options are mostly torch's own classes, and memory_share to the datasets that hold a
    memory budget (those that can stream their images). Every other run-time size is a keyword that each option of
    its group takes (the group's base class says which)."""
    if node is None or "_target_" not in node:
        raise ConfigError(f"{group}: no `_target_` in its config; choose an option of the `{group}` group")
    try:
        if optional:
            params = inspect.signature(get_object(node._target_)).parameters
            runtime.update({k: v for k, v in optional.items() if k in params})
        return instantiate(node, **runtime)
    except ImportError as e:  # get_object: no such module or class
        raise ConfigError(f"{group}._target_={node._target_}: {first_line(e)}") from None
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{group}.{cause}" if "=" in str(cause).split(":")[0] else f"{group}: {cause}") from None
        if cause is None:  # Hydra could not import or find the target
            raise ConfigError(f"{group}._target_={node._target_}: {first_line(e)}") from None
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(cause)) if isinstance(cause, TypeError) else None
        if unknown:
            raise ConfigError(f"{group}.{unknown[1]}: unknown key for {node._target_}") from None
        raise ConfigError(f"{group}: {first_line(cause, with_type=True)} (config: {OmegaConf.to_container(node)})") from None


def build_model(cfg, data):
    """The VAE of `cfg` for `data`'s image shape, on the CPU; too big for the memory of data's device is a ConfigError."""
    def assemble():
        return VAE(
            encoder=build("encoder", cfg.encoder, in_shape=data.shape, latent_dim=cfg.latent_dim),
            decoder=build("decoder", cfg.decoder, out_shape=data.shape, latent_dim=cfg.latent_dim),
            likelihood=build("likelihood", cfg.likelihood, shape=data.shape),
            prior=build("prior", cfg.prior, latent_dim=cfg.latent_dim, in_shape=data.shape),
        )
    with torch.device("meta"):  # sizes first, nothing allocated: too big for memory is a config error
        check_fits(assemble(), data.device)
    model = assemble()
    model.likelihood.check_dataset(data)
    if not model.prior.analytic_kl:
        log.info("prior %s: %s", type(model.prior).__name__, MC_KL_NOTE)
    return model


def build_penalty(cfg, data, model):
    """The `penalty` group's option for `model` trained on `data` (its training set's size, the model's latent size
    and prior), on the model's device; one whose terms are not its `names` is a ConfigError (`check_penalty`)."""
    penalty = build("penalty", cfg.penalty, dataset_size=data.size("train"), latent_dim=cfg.latent_dim,
                    prior=model.prior)
    device = next(model.parameters()).device
    return check_penalty(penalty.to(device), cfg.penalty._target_, cfg.latent_dim, device)


def check_penalty(penalty, target, latent_dim, device):
    """`penalty`, once its forward on a batch of two zero codes has returned a scalar and exactly the terms its `names`
    list (what the loop keeps a place for at every step): a mismatch found here rather than at the first step.
    The random state is restored after it: the check draws nothing from a run's streams."""
    zeros = torch.zeros(2, latent_dim, device=device)
    terms = Terms(zeros.sum(1), zeros, zeros, zeros, None, zeros)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        part, parts = penalty(terms, 1.0, 0)
    if set(parts) != set(penalty.names) or torch.as_tensor(part).dim() != 0:
        raise ConfigError(f"penalty._target_={target}: its forward returns the terms {sorted(parts)} and a loss part of "
                          f"shape {tuple(torch.as_tensor(part).shape)}; it must return a scalar and exactly the terms "
                          f"of its `names`, {sorted(penalty.names)}")
    return penalty


def build_scheduler(cfg, optimizer, steps_per_epoch):
    """The `scheduler` group's partial finished with the optimizer (and steps_per_epoch where the class takes it)."""
    make = build("scheduler", cfg.scheduler, optional={"steps_per_epoch": steps_per_epoch})
    try:
        return make(optimizer)
    except ConfigError as e:
        raise ConfigError(f"scheduler.{e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"scheduler: {first_line(e)} (config: {OmegaConf.to_container(cfg.scheduler)})") from None


def build_optimizer(cfg, params):
    """The `optimizer` group's torch.optim partial, checked (vae_lab.runtime.config), over `params` (a model's, or a
    stack's stacked tensors: vae_lab.runtime.stack)."""
    make = build("optimizer", cfg.optimizer)
    check_optimizer_args(cfg.optimizer._target_, make.func, make.keywords)
    try:
        return make(params)
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. fused=true with foreach=true
        raise ConfigError(f"optimizer: {first_line(e)} (config: {OmegaConf.to_container(cfg.optimizer)})") from None
