"""One run across several processes: torch.distributed and DistributedDataParallel, NCCL on GPUs and gloo on CPUs.

Every process of a run (a `Team`) holds the same parameters and draws every random number for the whole global batch
(trainer.batch_size), then keeps its own rows of it (`Team.rows`): the images it trains on, their reparameterisation
noise and binarisation. The penalty sees the whole batch's codes (`Team.gather`, with autograd), and
DistributedDataParallel averages the gradients, so that N processes take the step one process takes on the same global
batch, up to the order of floating-point sums. Rank 0 alone writes the run directory.

Processes come from an existing launcher, never from here: `launch` runs torch's elastic agent in this process
(vae-train trainer.devices=N), torchrun sets the same environment, and on Slurm `from_slurm` turns the task's
variables into it.
"""
import contextlib
import datetime
import logging
import multiprocessing
import os
import re
import tempfile
import uuid
import warnings

import torch
import torch.distributed as dist

from vae_lab.checks import ConfigError, positive_int
from vae_lab.runtime.interrupt import StopRequest

log = logging.getLogger("vae_lab")
# torch.distributed.nn.functional.all_gather is the public collective with autograd; the replacement its warning
# names is private (torch.distributed._functional_collectives): keep the public one, without a warning per step.
warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)

TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long: rank 0 may be validating or saving meanwhile
SLURM_PORT_BASE = 20000  # a Slurm job's rendezvous port: this plus the job id modulo 10,000, the same on every task


class Team:
    """The processes training one run: this one's `rank` among `size`; rank 0 is `main` and alone writes.
    With size 1 every method returns its input: no process group, nothing changes for a run of one process."""

    def __init__(self, rank=0, size=1, local_rank=0):
        self.rank, self.size, self.local_rank = rank, size, local_rank

    @property
    def main(self):
        return self.rank == 0

    def rows(self, n):
        """This process's rows of a global batch of n: consecutive, sizes differing by at most one (an epoch's last,
        partial batch need not divide by the number of processes)."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def gather(self, tensor, n):
        """The global batch's rows (n, ...) from every process's rows of it (`rows`), differentiably: the gradient
        of a function of the whole batch reaches each process's own rows (torch.distributed.nn.functional.all_gather
        sums it over the processes in its backward)."""
        if self.size == 1:
            return tensor
        from torch.distributed.nn.functional import all_gather

        largest = -(-n // self.size)
        padded = torch.nn.functional.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, largest - len(tensor)))
        parts = all_gather(padded.contiguous())  # all_gather needs equal shapes: pad, then cut each back
        counts = [len(range(n)[Team(r, self.size).rows(n)]) for r in range(self.size)]
        return torch.cat([part[:count] for part, count in zip(parts, counts)])

    def place(self, device):
        """The device this process trains on: its own GPU (cuda:<local rank>) when the run trains on GPUs."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.size > 1 else device

    def average(self, tensor):
        """The mean over the processes of `tensor`, in place."""
        if self.size > 1:
            dist.all_reduce(tensor)
            tensor.div_(self.size)
        return tensor

    def agree(self, value):
        """The first value other than None among the processes' `value`s (rank order), or None: one decision for all
        (a signal received, a non-finite value found). A host sync: call it where the loop syncs anyway."""
        if self.size == 1:
            return value
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return next((v for v in values if v is not None), None)

    def from_main(self, value):
        """Rank 0's `value`, on every process."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first(self, make):
        """make() on rank 0, then on the others: what rank 0 writes on the way (a decoded-image cache) the others
        read. A ConfigError on rank 0 is raised on every process."""
        if self.size == 1:
            return make()
        made, error = attempt(make) if self.main else (None, None)
        if error := self.from_main(error):
            raise ConfigError(error)
        return made if self.main else make()

    def agree_on(self, make):
        """make() on every process; a ConfigError raised on any of them is raised on all, so that none goes on to wait
        for the others in a collective."""
        if self.size == 1:
            return make()
        made, error = attempt(make)
        if error := self.agree(error):
            raise ConfigError(error)
        return made


def attempt(make):
    """(make(), None), or (None, the message of the ConfigError it raised): a failure to be shared with the other
    processes before it is raised, rather than raised here alone."""
    try:
        return make(), None
    except ConfigError as e:
        return None, str(e)


def gather_terms(team, terms, n):
    """The ELBO's terms of the whole global batch of n images (`Team.gather`) from this process's rows of them: what a
    penalty computed over the batch sees. The decoder's output stays with each process."""
    return terms._replace(**{name: team.gather(getattr(terms, name), n)
                             for name in ("recon_ll", "kl", "mean", "log_var", "z")}, params=None)


def environment():
    """(rank, size, local rank) that the launcher set: torchrun and torch's elastic agent (RANK, WORLD_SIZE,
    LOCAL_RANK), or Slurm's tasks (`from_slurm`); (0, 1, 0) for a process on its own."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        from_slurm(env)
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    return 0, 1, 0


def from_slurm(env):
    """torch.distributed's environment from a Slurm task's (`srun`, or submitit's tasks_per_node): one process per
    task, rank SLURM_PROCID of SLURM_NTASKS, the rendezvous on the first node of the job at a port derived from the
    job id (the same on every task, different between jobs that share a node). Sets what is not set already."""
    first = first_host(env["SLURM_JOB_NODELIST"] if "SLURM_JOB_NODELIST" in env else env["SLURM_NODELIST"])
    values = {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_NTASKS"], "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
              "LOCAL_WORLD_SIZE": env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0],
              "MASTER_ADDR": first, "MASTER_PORT": str(SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", 0)) % 10_000)}
    for key, value in values.items():
        env.setdefault(key, value)


def first_host(nodelist):
    """The first host of a Slurm node list: "gpu[03-05,07],cpu1" -> "gpu03" (scontrol show hostnames' first line)."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: not a Slurm node list")
    prefix, ranges = match.groups()
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def join(device):
    """This process's Team, its process group started when there are several: NCCL when the run trains on GPUs
    (`device`), each process on its own (cuda:<local rank>), gloo on CPUs."""
    team = Team(*environment())
    if team.size > 1 and not dist.is_initialized():
        device = team.place(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    return team


def leave():
    """Shut the process group down, if one was started: on every way out of a run."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size, size):
    if batch_size % size:
        raise ConfigError(f"trainer.batch_size={batch_size}: the global batch must divide among {size} processes "
                          f"(trainer.devices); e.g. trainer.batch_size={batch_size // size * size or size}")


class Forward(StopRequest):
    """While the processes of a run started here train: SIGINT or SIGTERM here is passed on to each of them, which
    stop together at their next logging step with one checkpoint and return as usual; a second one exits at once
    (the agent then ends them). torch's agent would instead end them itself after a timeout, while they wait for it
    to collect what they return."""

    def _handle(self, signum, frame):
        super()._handle(signum, frame)  # the second signal raises SystemExit
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)


def launch(processes, entrypoint, *args):
    """entrypoint(*args) in `processes` processes on this machine through torch's elastic agent (a c10d rendezvous
    on a free local port, as torchrun --standalone); {rank: return value}. A worker that raises fails the whole run
    (torch.distributed.elastic ChildFailedError); SIGINT and SIGTERM here are passed on to every worker (`Forward`)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    positive_int("trainer.devices", processes)
    handled = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")  # the agent sets it for good: put it back after
    try:
        with tempfile.TemporaryDirectory(prefix="vae_lab-elastic-") as logs, Forward():  # the agent's error files
            config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                                  rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                  monitor_interval=0.1, start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=logs),
                                  signals_to_handle="SIGHUP,SIGQUIT")  # SIGINT and SIGTERM are Forward's
            return elastic_launch(config, entrypoint)(*args)
    finally:
        if handled is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = handled
