"""Instantiate config groups through Hydra's `_target_`, turning a bad value into one line naming its key."""
import re

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vae_lab.checks import ConfigError


def build(group, node, **runtime):
    """instantiate(node, **runtime); a ConfigError raised by the class comes back prefixed with `group`."""
    if node is None or "_target_" not in node:
        raise ConfigError(f"{group}: no `_target_` in its config; choose an option of the `{group}` group")
    try:
        return instantiate(node, **runtime)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{group}.{cause}" if "=" in str(cause).split(":")[0] else f"{group}: {cause}") from None
        if cause is None:  # Hydra could not import or find the target
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"{group}._target_={node._target_}: {first}") from None
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(cause)) if isinstance(cause, TypeError) else None
        if unknown:
            raise ConfigError(f"{group}.{unknown[1]}: unknown key for {node._target_}") from None
        raise ConfigError(f"{group}: {_one_line(cause)} (config: {OmegaConf.to_container(node)})") from None


def _one_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
