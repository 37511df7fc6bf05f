"""The training loop for every VAE the configs can assemble (the vae-train command: vae_lab.train_command).

`train()` is the loop; the functions above it set a run up, restore it, take a step, log, validate and save.
With several processes (trainer.devices, torchrun, Slurm: vae_lab.runtime.distributed) every process runs the same
loop on its rows of each global batch (Team.batch); rank 0 alone validates and writes.
"""
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from omegaconf import OmegaConf

from vae_lab import rundir
from vae_lab.checks import ConfigError, first_line, resolve_device
from vae_lab.measure.collapse import CollapseWatch
from vae_lab.measure.elbo import measure
from vae_lab.measure.pictures import log_pictures
from vae_lab.model import objective
from vae_lab.progress import bar
from vae_lab.rundir import Status
from vae_lab.runtime import checkpoint, distributed
from vae_lab.runtime.build import build, build_model, build_optimizer, build_penalty, build_scheduler
from vae_lab.runtime.clock import Clock
from vae_lab.runtime.config import check_root, warn_mean_reduction
from vae_lab.runtime.distributed import Team
from vae_lab.runtime.guard import NonFiniteGuard, diverged_message
from vae_lab.runtime.interrupt import StopRequest, exit_code
from vae_lab.runtime.logbook import Logbook
from vae_lab.runtime.means import TrainingMeans

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
    written. With several processes a failure on any one of them is raised on all before the next collective
    (Team.agree_on), so none is left waiting."""
    team = team or Team()
    saved, device = team.agree_on(lambda: prepare(cfg, run_dir, team))
    # a cache is written once, then read; the images' memory budget is shared with this machine's other processes
    data = team.first(lambda: build("dataset", cfg.dataset, device=device,
                                    optional={"memory_share": team.memory_share(device)}))
    training = team.agree_on(lambda: assemble(cfg, run_dir, team, saved, data))
    training.logbook = Logbook(run_dir, purge_step=training.state.step + 1 if saved is not None else None) if team.main else None
    training.step_model = team.wrap(training.state.model)  # a collective: only once setup has been agreed
    if training.trainer.compile:  # opt-in: scripts/bench.py
        training.step_model = torch.compile(training.step_model)
    return training


def prepare(cfg, run_dir, team):
    """(the checkpoint to resume or None, this process's device), with the run's random state seeded."""
    check_root(cfg)
    distributed.check_batch(cfg.trainer.batch_size, team.size)
    saved = checkpoint.load(rundir.checkpoint(cfg.resume)) if cfg.resume is not None else None
    if saved is None and not rundir.is_fresh(run_dir):
        raise ConfigError(f"hydra.training.dir={run_dir}: holds another run already; choose a new directory or resume={run_dir}")
    seed_everything(cfg.seed)
    return saved, team.place(resolve_device(cfg.device))


def assemble(cfg, run_dir, team, saved, data):
    """The Training of `cfg` on `data`, restored from `saved` when resuming; its logbook and step model unset."""
    device = data.device
    model = build_model(cfg, data).to(device)
    t = SimpleNamespace(**OmegaConf.to_container(cfg.trainer, resolve=True))
    penalty = build_penalty(cfg, data, model)
    team.share_gradients(penalty)  # its own parameters (FactorVAE's discriminator) take one averaged step everywhere
    steps_per_epoch = epoch_steps(data.size("train"), t.batch_size, penalty.min_batch, cfg.penalty._target_)
    total = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    kl_schedule = build("kl", cfg.kl, total_steps=max(total, 1), steps_per_epoch=steps_per_epoch)
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
    return Training(cfg, Path(run_dir), data, state, kl_schedule,
                    1.0 if cfg.loss.reduction == "sum" else 1.0 / data.num_pixels, t, total, steps_per_epoch,
                    step_model=None, autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"),
                    logbook=None, collapse_watch=CollapseWatch(cfg.eval.collapse_patience), resumed=saved is not None,
                    team=team, latent_dim=cfg.latent_dim)


def epoch_steps(images, batch_size, min_batch, penalty):
    """Steps per epoch of `images` training images in batches of batch_size. An epoch's last, partial batch is trained
    on, unless it holds fewer images than the penalty's batch statistics need (`min_batch`: 2 for the β-TCVAE's
    q(z), DIP-VAE's covariance, FactorVAE's permutation): then it is left out of that epoch (which images, the
    epoch's shuffle decides), rather than failing or degrading silently at that step."""
    if batch_size < min_batch or images < min_batch:
        what = f"trainer.batch_size={batch_size}" if batch_size < min_batch else f"a training set of {images} images"
        raise ConfigError(f"{what}: penalty {penalty} needs batches of at least {min_batch} images (its batch "
                          f"statistics); raise trainer.batch_size or the training set's size")
    full, rest = divmod(images, batch_size)
    if 0 < rest < min_batch:
        log.info("each epoch's last batch of %d image(s) is left out: penalty %s needs batches of at least %d",
                 rest, penalty, min_batch)
        return full
    return full + (rest > 0)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(training):
    """Training images from the run's current step to its last (this process's rows of each step's batch); each
    epoch's order is a pure function of (seed, epoch), so a resumed run sees the batches it would have seen. A
    streamed dataset gathers them a few batches ahead (data.stream); the order and every random draw stay here."""
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
    """One optimiser step on the images x, this process's rows of the step's global batch (Team.batch: the
    reparameterisation noise is drawn for the whole batch and the penalty sees the whole batch's terms). The guard
    records its terms and gradients on the device, no host read."""
    s = training.state
    weight = training.kl_schedule.weight(s.step)
    batch = training.team.batch(batch_size(training, s.step))
    noise = batch.draw((training.latent_dim,), s.generators["noise"], x.device)
    with training.autocast:
        terms = training.step_model(x, noise=noise)
        loss, parts = objective(terms, s.penalty, weight, s.step, training.recon_scale, batch)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    seen = batch.sees(terms)  # what the penalty saw
    if s.guard.record(s.step, loss, seen, parts, weight):  # False: trainer.nonfinite=skip
        s.optimizer.step()
        s.guard.record_later(s.penalty.update(seen, s.step, s.generators["penalty"]))
    s.scheduler.step()
    s.step += 1


def due(training, stop, start_step):
    """What follows the step just taken: log, validate, save, stop (a signal, or trainer.stop_at_step), and the
    signal that stops it. Several processes act together on a signal that any of them received, at the next logging
    step: what this process's handler received (stop.signal) is never overwritten by what they agreed, so a signal
    that arrives while they agree is agreed at the next logging step."""
    step, t, team = training.state.step, training.trainer, training.team
    last = step == training.total
    log_now = step % t.log_every == 0 or last
    signal = stop.signal if team.size == 1 else team.agree(stop.signal) if log_now else None
    stopping = signal is not None or (t.stop_at_step is not None and start_step < t.stop_at_step <= step < training.total)
    validate = step % t.eval_every == 0 or last
    return SimpleNamespace(log=log_now, validate=validate, stop=stopping, signal=signal,
                           save=validate or step % t.checkpoint_every == 0 or stopping)


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
    training = setup(cfg, Path(run_dir), team)  # a failure on any process stops all of them
    s, start_step, clock = training.state, training.state.step, Clock()
    # A resumed run that had finished but for its summary reuses its last validation: nothing is logged twice.
    result = (training.logbook.evaluation_at(s.step) if training.resumed and s.step >= training.total and team.main
              else None)
    status, problem, signal = Status.COMPLETED, None, None
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
                status, signal = Status.INTERRUPTED if now.signal else Status.STOPPED, now.signal
                break
    if status == Status.COMPLETED and result is None and team.main:  # nothing trained here (epochs=0, a finished
        result = validate(training)                                  # run resumed)
        save(training, rundir.LAST)
    return finish(training, status, result, clock, problem, signal)


def finish(training, status, result, clock, problem, signal):
    """Write summary.json (and, once the run has ended for good, its HParams session); return the summary."""
    step = training.state.step
    if status == Status.DIVERGED:
        extra = {"error": diverged_message(problem, training.dir)}
    elif not status.final:
        why = signal or "trainer.stop_at_step"
        extra = {"signal": signal, "exit_code": exit_code(signal) if signal else 0,
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


if __name__ == "__main__":  # python -m vae_lab.train, torchrun -m vae_lab.train: the vae-train command
    from vae_lab.train_command import main

    main()
