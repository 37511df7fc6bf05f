"""vae-train: one plain training loop for every VAE the configs can assemble."""
import inspect
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from vae_lab import checkpoint, runs, sweep
from vae_lab.build import build
from vae_lab.checks import ConfigError, choice, number, positive_int
from vae_lab.diagnostics import CollapseWatch
from vae_lab.interrupt import StopRequest
from vae_lab.metrics import evaluate
from vae_lab.model import VAE, objective
from vae_lab.nonfinite import StepRecord
from vae_lab.pictures import log_pictures
from vae_lab.priors import MC_KL_NOTE
from vae_lab.resources import check_fits
from vae_lab.run_log import RunLog
from vae_lab.threads import set_threads

log = logging.getLogger("vae_lab")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_root(cfg):
    """Keys outside the config groups; each group's class checks its own keys."""
    check_keys(cfg)
    positive_int("latent_dim", cfg.latent_dim)
    number("seed", cfg.seed, low=0, high=2**32 - 1, integer=True)  # numpy's limit
    choice("device", cfg.device, ("auto", "cpu", "cuda"))
    choice("loss.reduction", cfg.loss.reduction, ("sum", "mean"))
    choice("objective", cfg.objective, ("elbo", "recon_nll", "kl", "bits_per_dim", "active_units"))
    t = cfg.trainer
    number("trainer.epochs", t.epochs, low=0, integer=True)
    if t.max_steps is not None:
        number("trainer.max_steps", t.max_steps, low=0, integer=True)
    if t.stop_at_step is not None:
        number("trainer.stop_at_step", t.stop_at_step, low=1, integer=True)
    choice("trainer.precision", t.precision, ("fp32", "bf16"))
    choice("trainer.compile", t.compile, (False, True))
    choice("trainer.nonfinite", t.nonfinite, ("stop", "skip"))
    for key in ("batch_size", "eval_every", "log_every", "checkpoint_every"):
        positive_int(f"trainer.{key}", t[key])
    if cfg.eval.max_images is not None:
        positive_int("eval.max_images", cfg.eval.max_images)
    positive_int("eval.batch_size", cfg.eval.batch_size)
    number("eval.iwae_k", cfg.eval.get("iwae_k", 0), low=0, integer=True)
    if cfg.eval.get("mi_images", 1000) is not None:
        positive_int("eval.mi_images", cfg.eval.get("mi_images"))
    positive_int("eval.collapse_patience", cfg.eval.get("collapse_patience", 2))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: no CUDA device is available here; use device=auto or device=cpu")


def check_keys(cfg):
    """Keys outside the config groups are those of configs/config.yaml (a misspelt `+key=` is not ignored, a
    deleted `~key` is not a traceback), and every interpolation resolves."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key or 'config'}: {str(e).splitlines()[0]}") from None
    base = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "config.yaml"))
    groups = {k for d in base.pop("defaults") if isinstance(d, dict) for k in d}
    base.pop("hydra")

    def walk(node, known, prefix):
        for key in node.keys() - known.keys() - (groups if not prefix else set()):
            raise ConfigError(f"{prefix}{key}: unknown key; known here: {', '.join(known)}")
        for key in known.keys() - node.keys():
            raise ConfigError(f"{prefix}{key}: missing; it is required (see configs/config.yaml)")
        for key, value in known.items():
            if isinstance(value, dict) != isinstance(node[key], dict):
                raise ConfigError(f"{prefix}{key}={node[key]}: must be {'a mapping' if isinstance(value, dict) else 'a value'}")
            if isinstance(value, dict):
                walk(node[key], value, f"{prefix}{key}.")
    walk(OmegaConf.to_container(cfg), base, "")
    for group in groups - {"experiment"}:
        if group not in cfg:
            raise ConfigError(f"{group}: missing; choose an option of the `{group}` group")


def build_model(cfg, data):
    def assemble():
        return VAE(
            encoder=build("encoder", cfg.encoder, in_shape=data.shape, latent_dim=cfg.latent_dim),
            decoder=build("decoder", cfg.decoder, out_shape=data.shape, latent_dim=cfg.latent_dim),
            likelihood=build("likelihood", cfg.likelihood, shape=data.shape),
            prior=build("prior", cfg.prior, latent_dim=cfg.latent_dim, in_shape=data.shape),
        )
    with torch.device("meta"):  # sizes first, nothing allocated: too big for memory is a config error
        check_fits(assemble(), data.device)
    model = assemble()
    model.likelihood.check_data(*data.value_range)
    if not model.prior.analytic_kl:
        log.info("prior %s: %s", type(model.prior).__name__, MC_KL_NOTE)
    return model


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg, run_dir):
    """Train the VAE that `cfg` describes, writing everything into `run_dir`; returns the summary."""
    run_dir = Path(run_dir)
    check_root(cfg)
    resume_from = None
    if cfg.resume is not None:
        resume_from = checkpoint.load(Path(cfg.resume) / "checkpoints" / "last.pt")
    elif (run_dir / "checkpoints").exists() or (run_dir / "summary.json").exists():
        raise ConfigError(f"hydra.run.dir={run_dir}: holds another run already; choose a new directory or resume={run_dir}")
    seed_everything(cfg.seed)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    data = build("dataset", cfg.dataset, device=device)
    model = build_model(cfg, data).to(device)
    optimizer = build_optimizer(cfg, model)
    # Plain values, not the DictConfig: reading a key from it costs ~8 us and the loop reads six or seven per step
    # (~50 us: 0.8% of the 784-512-20 MLP's step, 2% of a 784-16-2 one's).
    t = SimpleNamespace(**OmegaConf.to_container(cfg.trainer, resolve=True))
    steps_per_epoch = math.ceil(data.size("train") / t.batch_size)
    total = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    kl_schedule = build("kl", cfg.kl, total_steps=max(total, 1))
    recon_scale = 1.0 if cfg.loss.reduction == "sum" else 1.0 / data.num_pixels
    generators = {name: torch.Generator(device=device).manual_seed(cfg.seed * 7919 + i)
                  for i, name in enumerate(("noise", "binarize"))}
    record = StepRecord(model, t.nonfinite)  # per-step loss terms and gradients, checked for NaN/Inf
    step, best_elbo = 0, -math.inf
    if resume_from is not None:
        try:
            model.load_state_dict(resume_from["model"])
            optimizer.load_state_dict(resume_from["optimizer"])
            checkpoint.set_rng_state(resume_from["rng"], generators)
            record.load_state_dict(resume_from["record"])
            step, best_elbo = int(resume_from["step"]), float(resume_from["best_elbo"])
        except Exception as e:
            raise ConfigError(f"resume={cfg.resume}: checkpoints/last.pt does not fit this run's model "
                              f"({_first_line(e)})") from None
        log.info("resuming %s at step %d of %d", cfg.resume, step, total)
    runlog = RunLog(run_dir, purge_step=step + 1 if resume_from else None)
    if cfg.loss.reduction == "mean":
        warn_mean_reduction(kl_schedule.beta, data.num_pixels)

    collapse_watch = CollapseWatch(cfg.eval.get("collapse_patience", 2))

    def save(name):
        runlog.flush()  # events logged up to this step are on disk before a checkpoint says they happened
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "best_elbo": best_elbo, "rng": checkpoint.rng_state(generators), "record": record.state_dict()}
        checkpoint.save_atomic(state, run_dir / "checkpoints" / name)

    def validate():
        nonlocal best_elbo
        figures = evaluate(model, data, "val", cfg.eval.max_images, cfg.eval.batch_size, seed=cfg.seed,
                           iwae_k=cfg.eval.get("iwae_k", 0), mi_images=cfg.eval.get("mi_images", 1000))
        runlog.evaluation("val", figures, step, epoch=step / steps_per_epoch)
        collapse_watch.update(figures, step)
        log_pictures(runlog, model, data, "val", figures, step, run_dir / "figures", seed=cfg.seed, plots=False)
        if math.isfinite(figures["elbo"]) and figures["elbo"] > best_elbo:
            best_elbo = figures["elbo"]
            save("best.pt")
        return figures

    def finish(status, **figures):
        bar.close()
        summary = {"status": status, **figures, "steps": step, "run_dir": str(run_dir)}
        runlog.summary(summary)
        if status not in ("stopped", "interrupted"):  # one HParams session per run: when it has ended for good
            runlog.hparams(cfg, status=status)
        runlog.close()
        return summary

    model.train()
    # Opt-in speed-ups, off by default; scripts/bench.py measures them against the fp32 eager step.
    step_model = torch.compile(model) if t.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    window_images, order, order_epoch = 0, None, -1
    figures = runlog.evaluation_at(step) if resume_from and step >= total else None  # finished but for its summary
    train_s = logged_train_s = 0.0  # seconds spent training (evaluation and checkpoints excluded)
    start_step, wall_start = step, time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    tick = time.perf_counter()
    with StopRequest() as stop:  # SIGINT/SIGTERM: finish the step, write last.pt, return "interrupted"
        while step < total:
            epoch, i = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = data.epoch_order("train", epoch, cfg.seed), epoch
            x = data.batch("train", order[i * t.batch_size : (i + 1) * t.batch_size], generators["binarize"])
            with autocast:
                terms = step_model(x, generators["noise"])
                loss = objective(terms, kl_schedule, step, recon_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if record.add(step, loss, terms, kl_schedule.weight(step)):  # False: a bad step, trainer.nonfinite=skip
                optimizer.step()
            step += 1
            window_images += len(x)
            bar.update(1)

            stopping = stop.signal is not None or (t.stop_at_step is not None and start_step < t.stop_at_step <= step < total)
            log_now = step % t.log_every == 0 or step == total
            save_now = step % t.eval_every == 0 or step == total or step % t.checkpoint_every == 0 or stopping
            if (log_now or save_now) and (problem := record.problem(step, saving=save_now)):  # before it is kept
                return finish("diverged", error=diverged_message(problem, run_dir))
            if log_now:
                loss_v, rec, kl, w = record.means()
                now = time.perf_counter()
                train_s, tick = train_s + now - tick, now
                scalars = {"loss": loss_v, "elbo": rec - kl, "recon_nll": -rec, "kl": kl, "kl_weight": w,
                           "images_per_s": window_images / max(train_s - logged_train_s, 1e-9)}
                if recon_scale != 1.0:
                    scalars["effective_beta"] = w / recon_scale
                if record.skip:
                    scalars["skipped_steps"] = record.skipped
                runlog.scalars("train", scalars, step)
                bar.set_postfix(elbo=f"{rec - kl:.1f}", recon=f"{-rec:.1f}", kl=f"{kl:.2f}", refresh=False)
                window_images, logged_train_s = 0, train_s
            if save_now:
                train_s += time.perf_counter() - tick
                if step % t.eval_every == 0 or step == total:
                    figures = validate()
                    if problem := record.problem(step, figures):
                        return finish("diverged", error=diverged_message(problem, run_dir))
                save("last.pt")
                tick = time.perf_counter()
            if stopping:
                why = stop.signal or "trainer.stop_at_step"
                return finish("interrupted" if stop.signal else "stopped", signal=stop.signal,
                              exit_code=stop.exit_code if stop.signal else 0,
                              message=f"stopped at step {step} ({why}), {run_dir / 'checkpoints' / 'last.pt'} "
                                      f"written; continue with: vae-train resume={run_dir}")
    train_s += time.perf_counter() - tick

    if figures is None:  # nothing trained in this invocation (e.g. epochs=0, or resuming a finished run)
        figures = validate()
        save("last.pt")
    images = (step - start_step) * t.batch_size
    return finish("completed", **{k: v for k, v in figures.items() if k != "kl_per_dim"},
                  kl_per_dim=figures["kl_per_dim"], epochs=step / steps_per_epoch, skipped_steps=record.skipped,
                  wall_s=time.perf_counter() - wall_start, images_per_s=images / train_s if train_s > 0 else 0.0)


def build_optimizer(cfg, model):
    """The `optimizer` group is a partial of a torch.optim class: each value must have the type of that
    argument's default (a finite number, a list of them, a bool), then torch checks the ranges."""
    make = build("optimizer", cfg.optimizer)
    defaults = inspect.signature(make.func).parameters
    for key, value in make.keywords.items():
        if key not in defaults:
            raise ConfigError(f"optimizer.{key}: unknown key for {cfg.optimizer._target_}")
        default = defaults[key].default
        if isinstance(default, tuple):
            if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != len(default):
                raise ConfigError(f"optimizer.{key}={value}: must be a list of {len(default)} numbers")
            for j, v in enumerate(value):
                number(f"optimizer.{key}[{j}]", v, low=-FLOAT32_MAX, high=FLOAT32_MAX)
        elif isinstance(default, bool):
            choice(f"optimizer.{key}", value, (False, True))
        elif default is None and "bool" in str(defaults[key].annotation):  # e.g. fused, foreach: None means auto
            choice(f"optimizer.{key}", value, (None, False, True))
        elif isinstance(default, (int, float)):
            number(f"optimizer.{key}", value, low=-FLOAT32_MAX, high=FLOAT32_MAX)  # torch computes in float32
    try:
        return make(model.parameters())
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. fused=true with foreach=true
        raise ConfigError(f"optimizer: {_first_line(e)} (config: {OmegaConf.to_container(cfg.optimizer)})") from None


def diverged_message(problem, run_dir):
    last = Path(run_dir) / "checkpoints" / "last.pt"
    kept = (f"the last good checkpoint, {last} (step {checkpoint.load(last)['step']}), is kept" if last.is_file()
            else "no checkpoint had been written")
    return f"{problem}; {kept}. Lower optimizer.lr (or, for rare bad batches, set trainer.nonfinite=skip)"


def _first_line(error, limit=240):
    """The error's message on one line (torch's state-dict errors put the useful part on their second line)."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def warn_mean_reduction(beta, pixels):
    effective = beta * pixels
    if effective > 10:
        log.warning("loss.reduction=mean divides log p(x|z) by %d pixels: relative to the ELBO the KL weight is "
                    "%.0f (beta %g x %d). Expect posterior collapse; loss.reduction=sum is the ELBO.",
                    pixels, effective, beta, pixels)


def report(summary):
    keys = ("elbo", "recon_nll", "kl", "bits_per_dim", "active_units")
    print(f"run directory: {summary['run_dir']}")
    print("validation:", "  ".join(f"{k} {summary[k]:.3f}" if isinstance(summary[k], float) else f"{k} {summary[k]}"
                                    for k in keys), "(nats per image)")
    print(f"{summary['steps']} steps, {summary['images_per_s']:.0f} images/s, {summary['wall_s']:.1f} s")


CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")  # configs/ at the repository root


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg):
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # a failed job is recorded in its summary.json; the sweep goes on
        summary = sweep.run_job(run, cfg, hc.runtime.output_dir)
    else:
        try:
            summary = run(cfg)
        except ConfigError as e:
            raise SystemExit(f"vae-train: error: {e}")
        if summary["status"] == "diverged":
            raise SystemExit(f"vae-train: error: {summary['error']}")
    if summary["status"] in ("stopped", "interrupted"):
        print(f"vae-train: {summary['message']}", file=sys.stderr, flush=True)
        if summary["exit_code"]:  # 128 + the signal's number: ends a sweep too; stop_at_step lets it go on
            raise SystemExit(summary["exit_code"])
    return summary.get(cfg.objective)  # what a sweeper such as hydra/sweeper=optuna optimises


def run(cfg):
    hc = HydraConfig.get()
    set_threads(cfg.threads, hc.launcher)
    raw = OmegaConf.to_container(hc, resolve=False)  # as typed: an override may hold a broken ${...}
    cfg, run_dir = runs.resume_target(cfg, Path(hc.runtime.output_dir), raw["overrides"]["task"],
                                      runs.search_roots(raw["run"]["dir"], raw["sweep"]["dir"]))
    summary = train(cfg, run_dir)
    if summary["status"] == "completed":
        report(summary)
    return summary


if __name__ == "__main__":
    main()
