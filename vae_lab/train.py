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
from vae_lab.model import Terms, objective
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
from vae_lab.runtime.resources import check_stack_fits
from vae_lab.runtime.stack import Stack, save_members, settle

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
                "penalty": {k: v.clone(memory_format=torch.contiguous_format) if isinstance(v, torch.Tensor) else v
                            for k, v in self.penalty.state_dict().items()},  # a stack's D: views of its stacked tensors
                "step": self.step,
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
    result: dict = None  # its last validation
    stack: dict = None  # the stack it trains in (vae_lab.runtime.stack): {"id", "manifest", "members"}; None alone


def setup(cfg, run_dir, team=None, datasets=None):
    """Check the config, build data, model, optimizer, KL schedule and random streams, restore a checkpoint
    (resume=<dir>), and open the run's log (`team`: one process by default). Raises ConfigError before anything is
    written. With several processes a failure on any one of them is raised on all before the next collective
    (Team.agree_on), so none is left waiting. `datasets`: {dataset config: dataset} shared by a stack's members."""
    team = team or Team()
    saved, device = team.agree_on(lambda: prepare(cfg, run_dir, team))
    # a cache is written once, then read; the images' memory budget is shared with this machine's other processes
    key, datasets = str(OmegaConf.to_container(cfg.dataset, resolve=True)), {} if datasets is None else datasets
    if key not in datasets:
        datasets[key] = team.first(lambda: build("dataset", cfg.dataset, device=device,
                                                 optional={"memory_share": team.memory_share(device)}))
    data = datasets[key]
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
    if cfg.resume is not None:
        settle(cfg.resume)  # a stack's member killed while its checkpoints were committed
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
    optimizer = build_optimizer(cfg, model.parameters())
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


def stacked_step(stack, xs):
    """One optimiser step of every member of `stack`, each on its own images (xs: one batch per member, drawn in
    its own order): the forward vmapped over the stacked parameters with each member's noise from its own stream,
    each member's objective with its own penalty and KL weight, one backward, one step of the stacked optimiser,
    each penalty's update with its own stream. As train_step, nothing is read back from the device."""
    members, step = stack.members, stack.members[0].state.step
    n = batch_size(members[0], step)
    noise = torch.stack([m.team.batch(n).draw((m.latent_dim,), m.state.generators["noise"], xs[0].device)
                         for m in members])
    with members[0].autocast:
        terms = torch.func.vmap(stack.forward)(stack.params, stack.buffers, torch.stack(xs), noise)
        each = [Terms(*(t[i] for t in terms)) for i in range(stack.size)]
        weights = [m.kl_schedule.weight(step) for m in members]
        objectives = [objective(t, m.state.penalty, w, step, m.recon_scale) for m, t, w in zip(members, each, weights)]
    stack.optimizer.zero_grad(set_to_none=True)
    torch.stack([loss for loss, _ in objectives]).sum().backward()  # each member's gradient is its own loss's
    stack.mask_frozen()
    grads = stack.grad_figures()
    for i, (m, t, (loss, parts), w) in enumerate(zip(members, each, objectives, weights)):
        m.state.guard.record(step, loss, t, parts, w, grads[:, i])
    stack.optimizer.step()
    figures = stack.penalty_updates(each, step, [m.state.generators["penalty"] for m in members])
    for m, f in zip(members, figures):
        m.state.guard.record_later(f)
    stack.scheduler.step()
    for m in members:
        m.state.step += 1


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
    return run([setup(cfg, Path(run_dir), team)])[0]  # a failure on any process stops all of them


def train_stacked(cfgs, run_dirs, record):
    """Train the runs `cfgs` (configs that differ only in vae_lab.runtime.stack.STACKABLE keys) as one stack, each
    into its run directory as if alone; `record` is the stack's {"id", "manifest", "members"}. Returns the summaries."""
    if len(cfgs) == 1:
        return [train(cfgs[0], run_dirs[0])]
    check_stackable(cfgs[0])
    datasets = {}  # the members' images, built once for each distinct dataset config
    members = [setup(cfgs[0], Path(run_dirs[0]), datasets=datasets)]
    check_stack_fits(members[0].state.model, members[0].data.device, len(cfgs))  # before the others are built
    members += [setup(cfg, Path(d), datasets=datasets) for cfg, d in zip(cfgs[1:], run_dirs[1:])]
    steps = {m.state.step for m in members}
    if len(steps) > 1:
        raise ConfigError(f"resume: the stack's runs are at different steps ({sorted(steps)}); resume each with "
                          f"vae-train resume=<dir>, or the sweep without hydra/launcher=stacked")
    record = {**record, "members": [str(d) for d in run_dirs]}
    log.info("stack %s: %d models trained together, each into its run directory: %s", record["id"], len(members),
             ", ".join(record["members"]))
    for m in members:
        m.stack = record
    return run(members, Stack(members, record))


def check_stackable(cfg):
    t = cfg.trainer
    for key, value, why in (("trainer.devices", t.devices > 1, "a stack trains in one process"),
                            ("trainer.nonfinite", t.nonfinite == "skip", "Adam over a stacked tensor keeps one step "
                             "count, so a member that skipped a step could not match its lone run; use stop"),
                            ("trainer.compile", t.compile, "the stacked step is not compiled yet")):
        if value:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: not with hydra/launcher=stacked ({why})")


def run(members, stack=None):
    """The loop: one run (`members` a list of one) or a stack's runs, stepped together (`stack`). Each member logs,
    validates and saves as a lone run would; one that diverges ends alone, its updates masked out of the stack."""
    lead, team = members[0], members[0].team
    s, start_step, clock = lead.state, lead.state.step, Clock()
    for t in members:  # a resumed run that had finished but for its summary reuses its last validation
        t.result = t.logbook.evaluation_at(t.state.step) if t.resumed and t.state.step >= t.total and team.main else None
    ended, stopped = {}, None  # {member: its summary} of those that diverged; (status, signal) once all stop
    # SIGINT/SIGTERM: finish the step, save, stop
    with StopRequest() as stop, bar(lead.total, "train", "step", initial=s.step, enabled=team.main) as steps:
        for x in batches(lead) if stack is None else zip(*map(batches, members)):
            train_step(lead, x) if stack is None else stacked_step(stack, x)
            clock.count(batch_size(lead, s.step - 1))
            steps.update(1)
            now = due(lead, stop, start_step)
            if stack is not None and (now.log or now.save):
                stack.sync()  # the members' own modules hold what the stack trained
            rate = clock.lap() if now.log else None
            for i, t in enumerate(members):
                if i in ended:
                    continue
                # Non-finite values are looked for before anything computed after them is logged or kept.
                if (now.log or now.save) and (problem := team.agree(t.state.guard.problem(s.step, saving=now.save))):
                    ended[i] = end(t, stack, i, problem, clock)
                    continue
                if now.log:
                    log_training(t, rate, steps)
                if now.validate:
                    with clock.paused():
                        t.result = validate(t) if team.main else None  # the others wait at the next collective
                    if problem := team.from_main(t.state.guard.problem(s.step, t.result) if team.main else None):
                        ended[i] = end(t, stack, i, problem, clock)
            going = [t for i, t in enumerate(members) if i not in ended]
            if now.save and going:
                with clock.paused():
                    for t in going:  # the checkpoint holds every process's train/ sums, as one process's
                        team.average(t.state.means.sums)
                    save_all(going, rundir.LAST)
            if now.stop:
                stopped = (Status.INTERRUPTED if now.signal else Status.STOPPED, now.signal)
            if stopped or not going:
                break
    going = [t for i, t in enumerate(members) if i not in ended]
    if stopped is None and team.main and any(t.result is None for t in going):  # nothing trained here (epochs=0, a
        if stack is not None:                                                       # finished run resumed)
            stack.sync()
        for t in going:
            t.result = t.result or validate(t)
        save_all(going, rundir.LAST)
    status, signal = stopped or (Status.COMPLETED, None)
    return [ended[i] if i in ended else finish(t, status, t.result, clock, None, signal) for i, t in enumerate(members)]


def end(training, stack, i, problem, clock):
    """Member i diverged: its run ends so, the stack trains on without it."""
    if stack is not None:
        stack.freeze(i)
    return finish(training, Status.DIVERGED, training.result, clock, problem, None)


def save_all(members, name):
    """Each member's checkpoint `name`: a lone run's, or a stack's members' committed together (stack.save_members)."""
    if len(members) == 1 and members[0].stack is None:
        return save(members[0], name)
    if members[0].team.main:
        for t in members:
            t.logbook.flush()
        save_members([t.state.state_dict() for t in members], [t.dir for t in members], name, members[0].stack,
                     members[0].state.step)


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
    if training.stack is not None:
        summary["stack"] = {k: training.stack[k] for k in ("id", "members")}
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
