"""Argument checks that turn a bad config value into one readable line."""
import math
from numbers import Integral, Real


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key, the value and what is allowed."""


def _describe(value):
    return repr(value) if isinstance(value, str) else str(value)


def number(key, value, *, low=None, high=None, low_open=False, integer=False):
    """Return `value` if it is a finite number in range, else raise ConfigError naming `key`."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if ok and integer:  # an int, not 32.0: a float that passed would stay a float in the config the run uses
        ok = isinstance(value, Integral)
    if ok:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"<= {high}")
        allowed = f"{kind} {' and '.join(bounds)}" if bounds else f"a finite {kind[2:]}"
        raise ConfigError(f"{key}={_describe(value)}: must be {allowed}")
    return int(value) if integer else float(value)


def first_line(error, with_type=False, limit=240):
    """An exception's message as one line for `tool: error: ...`: its first non-empty line, and the next one too
    when the first only introduces it (torch's state-dict errors end their first line with a colon); the type's
    name when the message is empty, and before the message with `with_type`."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else "")
    if with_type or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


DEVICES = ("auto", "cpu", "cuda")  # `device` of vae-train and vae-eval: auto takes a GPU when there is one


def resolve_device(setting, key="device"):
    """One of DEVICES as a torch.device; cuda without a GPU is a ConfigError."""
    import torch

    choice(key, setting, DEVICES)
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda: no CUDA device is available here; use {key}=auto or {key}=cpu")
    return torch.device(setting)


def positive_int(key, value):
    return number(key, value, low=1, integer=True)


def int_list(key, value, *, allow_empty=True):
    """A list of positive integers (layer widths or channel counts)."""
    items = list(value) if isinstance(value, (list, tuple)) or _is_listconfig(value) else None
    if items is None or (not items and not allow_empty):
        need = "a list of positive integers" + ("" if allow_empty else " with at least one entry")
        raise ConfigError(f"{key}={_describe(value)}: must be {need}")
    for v in items:
        if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            raise ConfigError(f"{key}={_describe(list(items))}: entries must be positive integers")
    return [int(v) for v in items]


def choice(key, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{key}={_describe(value)}: must be one of {', '.join(map(_yaml, allowed))}")
    return value


def _yaml(value):
    """How a value is written in a config or an override: null, true, false."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _is_listconfig(value):
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)
