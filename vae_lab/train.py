"""vae-train: one plain training loop for every VAE the configs can assemble.

`train()` is the loop; the functions above it set a run up, restore it, take a step, log, validate and save.
With several processes (trainer.devices, torchrun, Slurm: vae_lab.runtime.distributed) every process runs the same
loop on its rows of each global batch; rank 0 alone validates and writes.
"""
import logging
import math
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.vae_lab_launcher import register_launchers
from vae_lab import rundir
from vae_lab.checks import ConfigError, first_line, resolve_device
from vae_lab.measure.collapse import CollapseWatch
from vae_lab.measure.elbo import measure
from vae_lab.measure.pictures import log_pictures
from vae_lab.model import objective
from vae_lab.progress import bar
from vae_lab.results import HEADLINE
from vae_lab.rundir import Status
from vae_lab.runtime import checkpoint, distributed, resume, sweep
from vae_lab.runtime.build import build, build_model, build_optimizer, build_penalty, build_scheduler
from vae_lab.runtime.config import CONFIG_DIR, check_root, register_resolvers
from vae_lab.runtime.distributed import Team
from vae_lab.runtime.guard import NonFiniteGuard
from vae_lab.runtime.interrupt import StopRequest
from vae_lab.runtime.logbook import Logbook
from vae_lab.runtime.means import TrainingMeans
from vae_lab.runtime.threads import set_threads

log = logging.getLogger("vae_lab")


@dataclass
class State:
    """What a checkpoint holds: restoring every field continues the run bit for bit."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per training step
    penalty: torch.nn.Module  # the KL penalty: parameters and an optimiser of its own for FactorVAE's discriminator
    generators: dict  # torch.Generator per random stream: reparameterisation noise, dynamic binarisation, the penalty's
    means: TrainingMeans  # the train/ terms' sums over the steps since the last log
    guard: NonFiniteGuard  # its count of skipped steps
    step: int = 0
    best_elbo: float = -math.inf

    def state_dict(self):
        """Call after guard.problem(): every recorded step has then reached the means."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "penalty": self.penalty.state_dict(), "step": self.step,
                "best_elbo": self.best_elbo, "rng": checkpoint.rng_state(self.generators),
                "record": {**self.means.state_dict(), "skipped": self.guard.skipped}}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # checkpoints from before the scheduler group: a constant rate, nothing to restore
            self.scheduler.load_state_dict(state["scheduler"])
        self.penalty.load_state_dict(state.get("penalty", {}))
        checkpoint.set_rng_state(state["rng"], self.generators)
        self.means.load_state_dict(state["record"])
        self.guard.skipped = int(state["record"]["skipped"])
        self.step, self.best_elbo = int(state["step"]), float(state["best_elbo"])


@dataclass
class Training:
    """A run being trained: its state, and what stays fixed while it trains."""

    cfg: object
    dir: Path
    data: object
    state: State
    kl_schedule: object
    recon_scale: float  # 1 for loss.reduction=sum (the ELBO); 1/pixels for mean
    trainer: SimpleNamespace  # cfg.trainer as plain values: reading a DictConfig key in every step is slow
    total: int  # steps
    steps_per_epoch: int
    step_model: torch.nn.Module  # the model, compiled with trainer.compile, in DistributedDataParallel with processes
    autocast: torch.autocast
    logbook: Logbook  # None on ranks other than 0
    collapse_watch: CollapseWatch
    resumed: bool
    team: Team  # the processes training this run (one by default)
    latent_dim: int


def setup(cfg, run_dir, team=None):
    """Check the config, build data, model, optimizer, KL schedule and random streams, restore a checkpoint
    (resume=<dir>), and open the run's log (`team`: one process by default). Raises ConfigError before anything is
    written."""
    team = team or Team()
    check_root(cfg)
    distributed.check_batch(cfg.trainer.batch_size, team.size)
    saved = checkpoint.load(rundir.checkpoint(cfg.resume)) if cfg.resume is not None else None
    if saved is None and not rundir.is_fresh(run_dir):
        raise ConfigError(f"hydra.training.dir={run_dir}: holds another run already; choose a new directory or resume={run_dir}")
    seed_everything(cfg.seed)
    device = team.place(resolve_device(cfg.device))
    data = team.first(lambda: build("dataset", cfg.dataset, device=device))  # a cache is written once, then read
    model = build_model(cfg, data).to(device)
    t = SimpleNamespace(**OmegaConf.to_container(cfg.trainer, resolve=True))
    steps_per_epoch = math.ceil(data.size("train") / t.batch_size)
    total = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    kl_schedule = build("kl", cfg.kl, total_steps=max(total, 1), optional={"steps_per_epoch": steps_per_epoch})
    penalty = build_penalty(cfg, data, model)
    means = TrainingMeans(penalty.names, device, later=penalty.update_names)
    optimizer = build_optimizer(cfg, model)
    state = State(model, optimizer, build_scheduler(cfg, optimizer, steps_per_epoch), penalty,
                  {name: torch.Generator(device=device).manual_seed(cfg.seed * 7919 + i)
                   for i, name in enumerate(("noise", "binarize", "penalty"))},
                  means, NonFiniteGuard(model, t.nonfinite == "skip", means))
    if saved is not None:
        try:
            state.load_state_dict(saved)
        except Exception as e:  # any mismatch: the checkpoint is not of this model
            raise ConfigError(f"resume={cfg.resume}: {rundir.checkpoint('.')} does not fit this run's model "
                              f"({first_line(e)})") from None
        log.info("resuming %s at step %d of %d", cfg.resume, state.step, total)
    if cfg.loss.reduction == "mean":
        warn_mean_reduction(kl_schedule.beta, data.num_pixels)
    model.train()
    step_model = model if team.size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    return Training(cfg, run_dir, data, state, kl_schedule, 1.0 if cfg.loss.reduction == "sum" else 1.0 / data.num_pixels,
               t, total, steps_per_epoch, torch.compile(step_model) if t.compile else step_model,  # opt-in: bench.py
               torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"),
               Logbook(run_dir, purge_step=state.step + 1 if saved is not None else None) if team.main else None,
               CollapseWatch(cfg.eval.collapse_patience), resumed=saved is not None, team=team,
               latent_dim=cfg.latent_dim)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(training):
    """Training batches from the run's current step to its last (this process's rows of each); each epoch's order is
    a pure function of (seed, epoch), so a resumed run sees the batches it would have seen. A streamed dataset gathers
    them a few batches ahead (data.stream); the order and every random draw stay in this process."""
    yield from training.data.stream("train", batch_indices(training), training.state.generators["binarize"],
                                    rows=training.team.rows)


def batch_size(training, step):
    """Images in the global batch of `step`: trainer.batch_size, fewer in an epoch's last batch."""
    i = step % training.steps_per_epoch
    return min(training.trainer.batch_size, training.data.size("train") - i * training.trainer.batch_size)


def batch_indices(training):
    """The train split's items (B,) of each step from the current one to the last."""
    size, order, order_epoch = training.trainer.batch_size, None, None
    for step in range(training.state.step, training.total):
        epoch, i = divmod(step, training.steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = training.data.epoch_order("train", epoch, training.cfg.seed), epoch
        yield order[i * size : (i + 1) * size]


def train_step(training, x):
    """One optimiser step on the batch x (this process's rows of the global batch). The guard records its terms and
    gradients on the device, no host read. The reparameterisation noise is drawn for the global batch, as one process
    draws it; with several processes the penalty sees the whole batch's terms (distributed.gather_terms)."""
    s, team = training.state, training.team
    weight = training.kl_schedule.weight(s.step)
    n = batch_size(training, s.step)
    noise = torch.randn((n, training.latent_dim), generator=s.generators["noise"], device=x.device)[team.rows(n)]
    with training.autocast:
        terms = training.step_model(x, noise=noise)
        batch = None if team.size == 1 else distributed.gather_terms(team, terms, n)
        loss, parts = objective(terms, s.penalty, weight, s.step, training.recon_scale, batch, team.size / n)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    batch = terms if batch is None else batch
    if s.guard.record(s.step, loss, batch, parts, weight):  # False: trainer.nonfinite=skip
        s.optimizer.step()
        s.guard.record_later(s.penalty.update(batch, s.step, s.generators["penalty"]))
    s.scheduler.step()
    s.step += 1


def due(training, stop, start_step):
    """What follows the step just taken: log, validate, save, stop (a signal, or trainer.stop_at_step).
    Several processes act on a signal that any of them received at the next logging step, all together."""
    step, t, last, team = training.state.step, training.trainer, training.state.step == training.total, training.team
    log = step % t.log_every == 0 or last
    if team.size > 1 and log:
        stop.signal = team.agree(stop.signal)
    signalled = stop.signal is not None and (team.size == 1 or log)
    stopping = signalled or (t.stop_at_step is not None and start_step < t.stop_at_step <= step < training.total)
    validate = step % t.eval_every == 0 or last
    return SimpleNamespace(log=log, validate=validate, stop=stopping,
                           save=validate or step % t.checkpoint_every == 0 or stopping)


class Clock:
    """Seconds spent training (evaluation and checkpoints are `paused()`) and the images trained in them."""

    def __init__(self):
        self.started = self.since = time.perf_counter()
        self.seconds = self.images = 0.0
        self.lap_seconds = self.lap_images = 0.0

    def count(self, images):
        self.images += images

    @contextmanager
    def paused(self):
        self.seconds += time.perf_counter() - self.since
        yield
        self.since = time.perf_counter()

    def training_seconds(self):
        return self.seconds + time.perf_counter() - self.since

    def lap(self):
        """Images per second of training since the previous lap."""
        seconds, images = self.training_seconds(), self.images
        rate = (images - self.lap_images) / max(seconds - self.lap_seconds, 1e-9)
        self.lap_seconds, self.lap_images = seconds, images
        return rate

    def summary(self):
        seconds = self.training_seconds()
        return {"wall_s": time.perf_counter() - self.started,
                "images_per_s": self.images / seconds if self.images else 0.0}


def log_training(training, images_per_s, steps):
    """The train/ scalars: the ELBO's terms, the loss and each weighted term of the penalty, and the KL weight
    (averaged over the processes)."""
    training.team.average(training.state.means.sums)
    m = training.state.means.pop()
    if not training.team.main:
        return
    rec, kl = m.pop("recon_ll"), m["kl"]
    scalars = {"elbo": rec - kl, "recon_nll": -rec, **m, "lr": training.state.scheduler.get_last_lr()[0],
               "images_per_s": images_per_s}
    if training.recon_scale != 1.0:
        scalars["effective_beta"] = m["kl_weight"] / training.recon_scale
    if training.state.guard.skip:
        scalars["skipped_steps"] = training.state.guard.skipped
    training.logbook.scalars("train", scalars, training.state.step)
    steps.set_postfix(elbo=f"{rec - kl:.1f}", recon=f"{-rec:.1f}", kl=f"{kl:.2f}", refresh=False)


def validate(training):
    """The val/ measurements, pictures and collapse watch; best.pt when the validation ELBO is the best so far."""
    cfg, s = training.cfg, training.state
    result = measure(s.model, training.data, "val", cfg.eval.max_images, cfg.eval.batch_size, seed=cfg.seed,
                      iwae_k=cfg.eval.iwae_k, decomposition_images=cfg.eval.decomposition_images)
    training.logbook.evaluation("val", result, s.step, epoch=s.step / training.steps_per_epoch)
    training.collapse_watch.update(result, s.step)
    log_pictures(training.logbook, s.model, training.data, "val", result, s.step, training.dir / rundir.FIGURES, seed=cfg.seed,
                 plots=False)
    if math.isfinite(result["elbo"]) and result["elbo"] > s.best_elbo:
        s.best_elbo = result["elbo"]
        save(training, rundir.BEST)
    return result


def save(training, name):
    """Rank 0 writes the checkpoint; every process's random draws are its, so it is every process's state."""
    if training.team.main:
        training.logbook.flush()  # events logged up to this step are on disk before a checkpoint says they happened
        checkpoint.save_atomic(training.state.state_dict(), rundir.checkpoint(training.dir, name))


def train(cfg, run_dir, team=None):
    """Train the VAE that `cfg` describes, writing everything into `run_dir`; returns the summary. `team`: this
    process's place among several training the run together (vae_lab.runtime.distributed), one process by default."""
    team = team or Team()
    training = team.agree_on(lambda: setup(cfg, Path(run_dir), team))  # a ConfigError on any process stops all
    s, start_step, clock = training.state, training.state.step, Clock()
    # A resumed run that had finished but for its summary reuses its last validation: nothing is logged twice.
    result = (training.logbook.evaluation_at(s.step) if training.resumed and s.step >= training.total and team.main
              else None)
    status, problem = Status.COMPLETED, None
    # SIGINT/SIGTERM: finish the step, save, stop
    with StopRequest() as stop, bar(training.total, "train", "step", initial=s.step, enabled=team.main) as steps:
        for x in batches(training):
            train_step(training, x)
            clock.count(batch_size(training, s.step - 1))
            steps.update(1)
            now = due(training, stop, start_step)
            # Non-finite values are looked for before anything computed after them is logged or kept.
            if (now.log or now.save) and (problem := team.agree(s.guard.problem(s.step, saving=now.save))):
                status = Status.DIVERGED
                break
            if now.log:
                log_training(training, clock.lap(), steps)
            if now.validate:
                with clock.paused():
                    result = validate(training) if team.main else None  # the others wait at the next collective
                if problem := team.from_main(s.guard.problem(s.step, result) if team.main else None):
                    status = Status.DIVERGED
                    break
            if now.save:
                with clock.paused():
                    team.average(s.means.sums)  # the checkpoint holds every process's train/ sums, as one process's
                    save(training, rundir.LAST)
            if now.stop:
                status = Status.INTERRUPTED if stop.signal else Status.STOPPED
                break
    if status == Status.COMPLETED and result is None and team.main:  # nothing trained here (epochs=0, a finished
        result = validate(training)                                  # run resumed)
        save(training, rundir.LAST)
    return finish(training, status, result, clock, problem, stop)


def finish(training, status, result, clock, problem, stop):
    """Write summary.json (and, once the run has ended for good, its HParams session); return the summary."""
    step = training.state.step
    if status == Status.DIVERGED:
        extra = {"error": diverged_message(problem, training.dir)}
    elif not status.final:
        why = stop.signal or "trainer.stop_at_step"
        extra = {"signal": stop.signal, "exit_code": stop.exit_code if stop.signal else 0,
                 "message": f"stopped at step {step} ({why}), {rundir.checkpoint(training.dir)} written; "
                            f"continue with: vae-train resume={training.dir}"}
    elif training.team.main:
        extra = {**{k: v for k, v in result.items() if k != "kl_per_dim"}, "kl_per_dim": result["kl_per_dim"],
                 "epochs": step / training.steps_per_epoch, "skipped_steps": training.state.guard.skipped,
                 "processes": training.team.size, **clock.summary()}
    else:  # the figures are rank 0's
        extra = {}
    summary = {"status": status, **extra, "steps": step, "run_dir": str(training.dir)}
    if not training.team.main:
        return summary
    training.logbook.summary(summary)
    if status.final:  # one HParams session per run
        training.logbook.hparams(training.cfg, status=status)
    training.logbook.close()
    return summary


def diverged_message(problem, run_dir):
    last = rundir.checkpoint(run_dir)
    kept = (f"the last good checkpoint, {last} (step {checkpoint.load(last)['step']}), is kept" if last.is_file()
            else "no checkpoint had been written")
    return f"{problem}; {kept}. Lower optimizer.lr (or, for rare bad batches, set trainer.nonfinite=skip)"


def warn_mean_reduction(beta, pixels):
    effective = beta * pixels
    if effective > 10:
        log.warning("loss.reduction=mean divides log p(x|z) by %d pixels: relative to the ELBO the KL weight is "
                    "%.0f (beta %g x %d). Expect posterior collapse; loss.reduction=sum is the ELBO.",
                    pixels, effective, beta, pixels)


def report(summary):
    print(f"run directory: {summary['run_dir']}")
    print("validation:", "  ".join(f"{k} {summary[k]:.3f}" if isinstance(summary[k], float) else f"{k} {summary[k]}"
                                    for k in HEADLINE if summary[k] is not None), "(nats per image)")
    print(f"{summary['steps']} steps, {summary['images_per_s']:.0f} images/s, {summary['wall_s']:.1f} s")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg):
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # a failed job is recorded in its summary.json; the sweep goes on
        summary = sweep.guarded_job(train_job, cfg, hc.runtime.output_dir)
    else:
        try:
            summary = train_job(cfg)
        except ConfigError as e:
            raise SystemExit(f"vae-train: error: {e}") from None
        if summary["status"] == Status.DIVERGED:
            raise SystemExit(f"vae-train: error: {summary['error']}")
    if summary["status"] in (Status.STOPPED, Status.INTERRUPTED):
        if distributed.environment()[0] == 0:  # one message for a run of several processes
            print(f"vae-train: {summary['message']}", file=sys.stderr, flush=True)
        if summary["exit_code"]:  # 128 + the signal's number: ends a sweep too; stop_at_step lets it go on
            raise SystemExit(summary["exit_code"])
    return summary.get(cfg.objective)  # what a sweeper such as hydra/sweeper=optuna optimises


def main():
    """The vae-train command."""
    register_resolvers()
    register_launchers()  # Hydra's plugin scan misses them under an editable install
    hydra_main()


def train_job(cfg):
    """One vae-train job: where it trains (a new run or the one it resumes), its processes and threads, the loop,
    the report. With trainer.devices=N (and no launcher's ranks here) it starts N processes and waits for them; a
    launcher's rank (torchrun, Slurm) joins the others and trains with them in rank 0's run directory."""
    hc = HydraConfig.get()
    raw = OmegaConf.to_container(hc, resolve=False)  # as typed: an override may hold a broken ${...}
    launcher = OmegaConf.to_container(hc.launcher, resolve=True) if hc.launcher else None
    rank, size, _ = distributed.environment()

    def target():
        return resume.resume_target(cfg, Path(hc.runtime.output_dir), raw["overrides"]["task"],
                                    resume.search_roots(raw["run"]["dir"], raw["sweep"]["dir"]))

    if size == 1 and cfg.trainer.devices > 1:
        check_root(cfg)
        distributed.check_batch(cfg.trainer.batch_size, cfg.trainer.devices)
        run_cfg, run_dir = target()
        summary = run_processes(run_cfg, run_dir, launcher)
    else:
        if size > 1 and cfg.trainer.devices not in (1, local_processes()):
            raise ConfigError(f"trainer.devices={cfg.trainer.devices}: the launcher started {local_processes()} "
                              f"processes on this machine; leave trainer.devices at 1 or set it to {local_processes()}")
        team = distributed.join(resolve_device(cfg.device))
        try:
            set_threads(cfg.threads, launcher)
            run_cfg, run_dir = agreed_target(team, target, Path(hc.runtime.output_dir))
            summary = train(run_cfg, run_dir, team)
        finally:
            distributed.leave()
    if summary["status"] == Status.COMPLETED and rank == 0:
        report(summary)
    return summary


def local_processes():
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def agreed_target(team, target, own_dir):
    """(config, run directory) as rank 0 decides them (a new run, resume=, resume=auto), on every process. Hydra made
    a directory for each process before this code ran: the others' are removed while they hold nothing else."""
    if team.size == 1:
        return target()
    made, error = distributed.attempt(target) if team.main else (None, None)
    shared = None if made is None else (OmegaConf.to_container(made[0], resolve=True), str(made[1]))
    error, shared = team.from_main((error, shared))
    if error:
        raise ConfigError(error)
    if team.main:
        return made
    cfg, run_dir = OmegaConf.create(shared[0]), Path(shared[1])
    if own_dir.resolve() != run_dir.resolve() and rundir.is_fresh(own_dir):
        shutil.rmtree(own_dir, ignore_errors=True)
    return cfg, run_dir


def run_processes(cfg, run_dir, launcher):
    """vae-train trainer.devices=N: the run trained by N processes started here (torch's elastic agent), this one
    waiting; rank 0's summary. A signal here reaches them all: they checkpoint and stop together (status interrupted)."""
    log.info("training %s with %d processes (trainer.devices)", run_dir, cfg.trainer.devices)
    summary = distributed.launch(cfg.trainer.devices, rank_main, OmegaConf.to_container(cfg, resolve=True),
                                 str(run_dir), launcher)[0]
    if isinstance(summary, ConfigError):
        raise summary
    return summary


def rank_main(cfg, run_dir, launcher):
    """One of the processes run_processes starts: join the others, train, return the summary (rank 0's counts);
    a ConfigError is returned, to be raised as one line where they were started."""
    rank = distributed.environment()[0]
    handlers = [logging.StreamHandler(sys.stdout)]
    if rank == 0:
        handlers.append(logging.FileHandler(Path(run_dir) / "train.log"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    register_resolvers()
    cfg = OmegaConf.create(cfg)
    try:
        team = distributed.join(resolve_device(cfg.device))
        try:
            set_threads(cfg.threads, launcher)
            return train(cfg, Path(run_dir), team)
        finally:
            distributed.leave()
    except ConfigError as e:
        return e


if __name__ == "__main__":
    main()
