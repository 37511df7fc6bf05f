"""Will the model fit: its parameters, gradients and Adam's two moments against the memory free on the device.

Checked on a copy built on the `meta` device (sizes only, nothing allocated), so that latent_dim=10**9 is a one-line
error rather than a process killed by the kernel's out-of-memory killer, possibly with its neighbours.
"""
import torch

from vae_lab.checks import ConfigError

COPIES = 4  # parameters, gradients, and the optimizer's first and second moments


def free_bytes(device):
    """Memory free for tensors on `device`, or None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_fits(meta_model, device, keys="latent_dim, encoder.hidden, decoder.hidden"):
    """ConfigError when COPIES x the model's parameter bytes exceed the memory free on `device`."""
    params = sum(p.numel() for p in meta_model.parameters())
    need = COPIES * sum(p.numel() * p.element_size() for p in meta_model.parameters())
    free = free_bytes(device)
    if free is not None and need > free:
        raise ConfigError(f"{keys}: the model has {params:,} parameters, {need / 2**30:.1f} GiB with gradients and "
                          f"optimizer state, more than the {free / 2**30:.1f} GiB free on {device}; make it smaller")
