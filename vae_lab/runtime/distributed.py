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
import shutil
import sys
import tempfile
import uuid
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from vae_lab import rundir
from vae_lab.checks import ConfigError, first_line, positive_int
from vae_lab.runtime.config import register_resolvers
from vae_lab.runtime.interrupt import StopRequest
from vae_lab.runtime.threads import set_threads

log = logging.getLogger("vae_lab")
# torch.distributed.nn.functional.all_gather is the public collective with autograd; the replacement its warning
# names is private (torch.distributed._functional_collectives): keep the public one, without a warning per step.
warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)

TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long: rank 0 may be validating or saving meanwhile
SLURM_PORT_BASE = 20000  # a Slurm job's rendezvous port: this plus the job id modulo 10,000, the same on every task


class Team:
    """The processes training one run: this one's `rank` among `size`; rank 0 is `main` and alone writes.
    With size 1 every method returns its input: no process group, nothing changes for a run of one process."""

    def __init__(self, rank=0, size=1, local_rank=0, local_size=1):
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size

    @property
    def main(self):
        return self.rank == 0

    def batch(self, n):
        """The global batch of n images of one step, as this process takes part in it (`Batch`)."""
        return Batch(self, n)

    def rows(self, n):
        """This process's rows of a global batch of n (`Batch.rows`): what a dataset's `stream` keeps of each batch."""
        return Batch(self, n).rows

    def place(self, device):
        """The device this process trains on: its own GPU (cuda:<local rank>) when the run trains on GPUs."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.size > 1 else device

    def memory_share(self, device):
        """The part of a machine's memory that this process's copy of the images may take: the processes of a run on
        one machine's memory each hold their own copy (on GPUs each has its own device)."""
        return 1.0 if device.type == "cuda" else 1.0 / self.local_size

    def wrap(self, model):
        """The model as the step calls it: in DistributedDataParallel with several processes (which averages the
        gradients), itself otherwise. Call once setup has been agreed: its constructor is a collective."""
        if self.size == 1:
            return model
        device = next(model.parameters()).device
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def share_gradients(self, module):
        """Average the gradients of `module`'s parameters over the processes as each is accumulated, so that a module
        outside DistributedDataParallel (FactorVAE's discriminator) takes the same step on every process by
        construction, whatever the kernels' rounding. Every process runs the same backward, so the hooks' collectives
        come in the same order everywhere."""
        if self.size == 1:
            return

        def average(p):
            self.average(p.grad)

        for p in module.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(average)

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

    def agree_on(self, make):
        """make() on every process; a failure (any exception) on any of them is raised on all as one ConfigError, so
        that none goes on to wait for the others in another collective. With one process, make() as it is."""
        if self.size == 1:
            return make()
        made, error = attempt(make, self.rank)
        if error := self.agree(error):
            raise ConfigError(error)
        return made

    def first(self, make):
        """make() on rank 0, then on the others: what rank 0 writes on the way (a decoded-image cache) the others
        read. A failure on any process is raised on every process (`agree_on`), each time before any other collective."""
        made = self.agree_on(make if self.main else lambda: None)
        return self.agree_on(lambda: made if self.main else make())

    def target(self, decide, own_dir):
        """(config, run directory) as rank 0 decides them (`decide()`: a new run, resume=, resume=auto), on every
        process. Hydra made a directory for each process before this code ran: the others' are removed while they
        hold nothing else."""
        if self.size == 1:
            return decide()
        made = self.agree_on(decide if self.main else lambda: None)
        shared = self.from_main(None if made is None else (OmegaConf.to_container(made[0], resolve=True), str(made[1])))
        if self.main:
            return made
        cfg, run_dir = OmegaConf.create(shared[0]), Path(shared[1])
        if Path(own_dir).resolve() != run_dir.resolve() and rundir.is_fresh(own_dir):
            shutil.rmtree(own_dir, ignore_errors=True)
        return cfg, run_dir


class Batch:
    """The global batch of one step, n images (trainer.batch_size, fewer at an epoch's end), as one process takes part:
    every random draw is made for the whole batch and sliced to this process's `rows`; the penalty `sees` the whole
    batch's terms; and `mean` is this process's part of the batch mean, so that the mean over processes that
    DistributedDataParallel takes of the gradients is the gradient of one process's loss, whatever rows each holds.
    For a team of one it is the whole batch and each method returns its input (vae_lab.model.WHOLE's arithmetic)."""

    def __init__(self, team, n):
        self.team, self.n, self._seen = team, n, None
        # consecutive rows, sizes differing by at most one: an epoch's last batch need not divide among the processes
        self.rows = slice(team.rank * n // team.size, (team.rank + 1) * n // team.size)

    def draw(self, shape, generator, device):
        """Standard normal draws (rows, *shape) for this process's rows, drawn for the whole batch (n, *shape)."""
        return torch.randn((self.n, *shape), generator=generator, device=device)[self.rows]

    def sees(self, terms):
        """The ELBO's terms of the whole batch from this process's rows of them (`gather`): what a penalty computed over
        the batch sees. The decoder's output stays with each process."""
        if self.team.size == 1:
            return terms
        if self._seen is None or self._seen[0] is not terms:  # gathered once per step: the loss and the guard share it
            self._seen = terms, terms._replace(**{name: self.gather(getattr(terms, name))
                                                  for name in ("recon_ll", "kl", "mean", "log_var", "z")}, params=None)
        return self._seen[1]

    def mean(self, values):
        """This process's part of the batch mean of per-image `values` (its rows): the mean itself with one process."""
        return values.mean() if self.team.size == 1 else values.sum() * (self.team.size / self.n)

    def gather(self, tensor):
        """The whole batch's rows (n, ...) from every process's rows of it, differentiably: the gradient of a function
        of the whole batch reaches each process's own rows (torch.distributed.nn.functional.all_gather sums it over
        the processes in its backward)."""
        if self.team.size == 1:
            return tensor
        from torch.distributed.nn.functional import all_gather

        size, n = self.team.size, self.n
        largest = -(-n // size)
        padded = torch.nn.functional.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, largest - len(tensor)))
        parts = all_gather(padded.contiguous())  # all_gather needs equal shapes: pad, then cut each back
        counts = [len(range(n)[Batch(Team(r, size), n).rows]) for r in range(size)]
        return torch.cat([part[:count] for part, count in zip(parts, counts)])


def attempt(make, rank=0):
    """(make(), None), or (None, a one-line message of what it raised): a failure to be shared with the other
    processes before it is raised, rather than raised here alone. Any exception counts: one raised on a single process
    would otherwise leave the others waiting in a collective (with NCCL until TIMEOUT); its traceback is logged here."""
    try:
        return make(), None
    except ConfigError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any failure is shared; the traceback stays in this process's log
        log.error("process %d: setup failed", rank, exc_info=True)
        return None, f"process {rank}: {first_line(e, with_type=True)}"


def fill_environment():
    """(rank, size, local rank, local size) that the launcher set: torchrun and torch's elastic agent (RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), or Slurm's tasks, whose variables it turns into torch.distributed's in
    os.environ (`from_slurm`: the rendezvous reads them there); (0, 1, 0, 1) for a process on its own. The one place
    that reads them."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", 1))
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        from_slurm(env)
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), int(env["LOCAL_WORLD_SIZE"])
    return 0, 1, 0, 1


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
    team = Team(*fill_environment())
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


def take_part(loop, device, threads, launcher, decide, own_dir):
    """This process's part of a run: join its team (alone, a team of one), set its torch threads, agree where the
    run trains (`decide()` -> (config, run directory), rank 0's decision), then loop(config, run directory, team);
    the process group is shut down on every way out. The same sequence for a process on its own, one of torchrun's or
    Slurm's, and one that `launch_run` starts."""
    team = join(device)
    try:
        team.agree_on(lambda: set_threads(threads, launcher, team.local_size))
        cfg, run_dir = team.target(decide, own_dir)
        return loop(cfg, run_dir, team)
    finally:
        leave()


def launch_run(loop, cfg, run_dir, launcher, device):
    """vae-train trainer.devices=N: the run trained by N processes started here (`launch`), this one waiting; rank 0's
    result of loop(config, run directory, team). A signal here reaches them all: they checkpoint and stop together."""
    log.info("training %s with %d processes (trainer.devices)", run_dir, cfg.trainer.devices)
    result = launch(cfg.trainer.devices, started, loop, OmegaConf.to_container(cfg, resolve=True), str(run_dir),
                    launcher, device)[0]
    if isinstance(result, ConfigError):
        raise result
    return result


def started(loop, cfg, run_dir, launcher, device):
    """What each process `launch_run` starts runs (spawned, so everything here is picklable: `loop` a module-level
    function): rank 0 logs to the run's train.log as Hydra would; a ConfigError is returned, to be raised as one line
    where they were started."""
    rank = fill_environment()[0]
    handlers = [logging.StreamHandler(sys.stdout)]
    if rank == 0:
        handlers.append(logging.FileHandler(Path(run_dir) / "train.log"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    register_resolvers()
    cfg = OmegaConf.create(cfg)
    try:
        return take_part(loop, device, cfg.threads, launcher, lambda: (cfg, Path(run_dir)), run_dir)
    except ConfigError as e:
        return e


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
