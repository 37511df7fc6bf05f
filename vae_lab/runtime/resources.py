"""Will the model fit: its parameters, gradients and Adam's two moments against the memory free on the device.

Checked on a copy built on the `meta` device (sizes only, nothing allocated), so that latent_dim=10**9 is a one-line
error rather than a process killed by the kernel's out-of-memory killer, possibly with its neighbours.
"""
import torch

from vae_lab.checks import ConfigError
from vae_lab.data.base import available_memory

COPIES = 4  # parameters, gradients, and the optimizer's first and second moments


def check_fits(meta_model, device, keys="latent_dim, encoder.hidden, decoder.hidden"):
    """ConfigError when COPIES x the model's parameter bytes exceed the memory free on `device`."""
    params = sum(p.numel() for p in meta_model.parameters())
    need = COPIES * sum(p.numel() * p.element_size() for p in meta_model.parameters())
    free = available_memory(torch.device(device))  # inf where it cannot be told
    if need > free:
        raise ConfigError(f"{keys}: the model has {params:,} parameters, {need / 2**30:.1f} GiB with gradients and "
                          f"optimizer state, more than the {free / 2**30:.1f} GiB free on {device}; make it smaller")


def check_stack_fits(meta_model, device, size):
    """ConfigError when a stack of `size` such models (hydra/launcher=stacked) exceeds the memory free on `device`:
    COPIES x the parameters of each, and a lone forward's activations are not counted, so it names the largest stack
    that fits the parameters' share."""
    one = COPIES * sum(p.numel() * p.element_size() for p in meta_model.parameters())
    free = available_memory(torch.device(device))
    if size * one > free:
        raise ConfigError(f"hydra.launcher.max_stack: a stack of {size} models needs {size * one / 2**30:.1f} GiB with "
                          f"gradients and optimizer state, more than the {free / 2**30:.1f} GiB free on {device}; the "
                          f"largest stack that fits is {max(int(free // one), 0)} (set hydra.launcher.max_stack)")
