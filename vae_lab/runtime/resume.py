"""Resuming: which config a run was started with, whether it finished, and finding the one to continue."""
import logging
from pathlib import Path

from omegaconf import OmegaConf

from vae_lab import nested, rundir
from vae_lab.checks import ConfigError
from vae_lab.rundir import NOT_TRAINED

log = logging.getLogger("vae_lab")

SEARCH_DEPTH = 4  # run directories are looked for at most this many levels below a search root


def unfinished(run_dir):
    """No final status yet: never ended, or stopped/interrupted with a checkpoint to continue from."""
    found = rundir.status(run_dir)
    return found is None or (isinstance(found, rundir.Status) and not found.final)


def resolved(cfg, like):
    """`cfg` as a plain resolved dict, with the run-specific keys of `like`, so that interpolations of them agree."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    for key in NOT_TRAINED:
        OmegaConf.update(cfg, key, OmegaConf.select(like, key, default=None), force_add=True)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that does not resolve: matches nothing
        return {"<unresolvable>": True}


def differences(a, b):
    """Keys at which configs a and b differ once resolved, run-specific keys aside ([] when they match)."""
    return nested.differences(resolved(a, b), resolved(b, b))


def search_roots(run_template, sweep_template):
    """The fixed leading part of hydra.run.dir and hydra.sweep.dir (outputs/runs, outputs/sweeps by default).

    A template without any ${...} is one fixed directory: its parent is searched, which includes it.
    """
    roots = []
    for template in (run_template, sweep_template):
        parts = Path(template).parts
        fixed = parts[: next((i for i, p in enumerate(parts) if "${" in p), len(parts))]
        root = Path(*fixed) if fixed else Path(".")
        roots.append(root.parent if len(fixed) == len(parts) else root)
    return list(dict.fromkeys(roots))


def find_unfinished(cfg, roots):
    """The newest run under `roots` with the same config as `cfg`, a last.pt and no final status; or None."""
    found = []
    for root in roots:
        for depth in range(SEARCH_DEPTH + 1):
            for ckpt in Path(root).glob("/".join(["*"] * depth + [rundir.checkpoint(".").as_posix()])):
                run_dir = ckpt.parent.parent
                if unfinished(run_dir) and rundir.is_run(run_dir):
                    found.append((ckpt.stat().st_mtime, run_dir))
    for _, run_dir in sorted(set(found), reverse=True):
        try:
            if not differences(rundir.config(run_dir, key="resume"), cfg):
                return run_dir
        except ConfigError:
            continue
    return None


def resumed_config(run_dir, cfg, overrides):
    """The config `run_dir` was started with, plus this command line's run-specific overrides (device=, ...).

    Any other override must agree with the saved config: resuming never silently drops or applies a change.
    """
    saved = rundir.config(run_dir, key="resume")
    for key in NOT_TRAINED:  # a key added since the run was started (trainer.devices): this command's value
        if OmegaConf.select(saved, key, default=None) is None and OmegaConf.select(cfg, key, default=None) is not None:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    mine, theirs = resolved(cfg, cfg), resolved(saved, cfg)
    for override in overrides:
        key = override.lstrip("~+").split("=", 1)[0]
        if key in NOT_TRAINED:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
            continue
        if key.startswith("hydra."):
            continue
        if nested.get(mine, key) is None and nested.get(theirs, key) is None:  # e.g. experiment=: it may set any key
            key = next(iter(nested.differences(mine, theirs)), key)
        if nested.get(mine, key) != nested.get(theirs, key):
            raise ConfigError(f"{override}: resume={run_dir} continues that run's own config, where {key}="
                              f"{nested.get(theirs, key)}; drop the override, or start a new run without resume=")
    saved.resume = str(run_dir)
    return saved


def resume_target(cfg, run_dir, overrides, roots):
    """(config, run directory) for this invocation: a new run in `run_dir`, resume=<dir>, or resume=auto."""
    if cfg.resume == "auto":
        found = find_unfinished(cfg, roots)
        where = ", ".join(map(str, roots))
        if found is None:
            log.info("resume=auto: no unfinished run of this config under %s; starting a new run in %s", where, run_dir)
            cfg.resume = None
        else:
            log.info("resume=auto: continuing %s (the newest unfinished run of this config under %s)", found, where)
            cfg.resume = str(found)
    if cfg.resume is None:
        return cfg, Path(run_dir)
    return resumed_config(cfg.resume, cfg, overrides), Path(cfg.resume)
