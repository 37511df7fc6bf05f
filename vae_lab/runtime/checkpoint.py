"""Checkpoints written atomically and read back with torch.load(weights_only=True)."""
import random
from pathlib import Path

import numpy as np
import torch

from vae_lab.checks import ConfigError, first_line
from vae_lab.rundir import write_atomic


def save_atomic(state, path):
    """Write `state` to `path` so that a kill at any instant leaves either the old file or the new one."""
    write_atomic(path, lambda f: torch.save(state, f))


def load(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint there")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a zip, unpickling refused: one line naming the file
        raise ConfigError(f"{path}: not a readable vae_lab checkpoint ({first_line(e)})") from None


def rng_state(generators):
    """Every random state a run depends on, as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, generators):
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    for name, g in generators.items():
        if name in state["generators"]:  # a stream added since the checkpoint was written (the penalty's) starts fresh
            g.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
