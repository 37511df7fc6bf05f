"""CPU threads per job, so that the jobs a Hydra launcher runs side by side do not oversubscribe the cores.

Oversubscription (jobs x threads > cores) makes a parallel sweep slower than a serial one: the threads of
different jobs preempt each other inside every matrix product.
"""
import logging
import os

import torch

from vae_lab.checks import ConfigError, positive_int

log = logging.getLogger("vae_lab")


def cores():
    """CPUs this process may run on (Slurm and taskset restrict the affinity mask, not os.cpu_count())."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_for(launcher, n_cores, processes=1):
    """(threads, why) for a job under the Hydra launcher config `launcher`, or for one of the `processes` training a
    run together on this machine (vae_lab.runtime.distributed: Team.local_size); threads None keeps torch's
    default."""
    if processes > 1:
        return max(n_cores // processes, 1), f"{n_cores} cores / {processes} processes of this run"
    target = str((launcher or {}).get("_target_", ""))
    if target.endswith("JoblibLauncher"):  # n_jobs processes at once; joblib: -1 is all cores, -2 all but one, ...
        n = launcher.get("n_jobs") or 1
        jobs = n if n > 0 else max(n_cores + 1 + n, 1)
        return max(n_cores // jobs, 1), f"{n_cores} cores / {jobs} parallel jobs"
    if ".hydra_submitit_launcher." in target:
        if launcher.get("cpus_per_task"):
            return int(launcher.cpus_per_task), "hydra.launcher.cpus_per_task"
        if target.endswith("LocalLauncher"):  # starts every job of the sweep at once
            return 1, "submitit_local runs all jobs at once; set hydra.launcher.cpus_per_task for more"
    return None, "torch's default"


def set_threads(setting, launcher=None, processes=1):
    """Apply `threads` (auto or a positive integer) for this job, one of `processes` training a run together on this
    machine; returns the thread count torch now uses."""
    if setting == "auto":
        n, why = threads_for(launcher, cores(), processes)
    elif isinstance(setting, int) and not isinstance(setting, bool):
        n, why = positive_int("threads", setting), "threads"
    else:
        raise ConfigError(f"threads={setting!r}: must be auto or a positive integer")
    if n is not None:
        torch.set_num_threads(n)
    log.info("torch threads: %d (%s)", torch.get_num_threads(), why)
    return torch.get_num_threads()
