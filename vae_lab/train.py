"""vae-train: one plain training loop for every VAE the configs can assemble."""
import logging
import math
import random
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from tqdm import tqdm

from vae_lab import checkpoint, sweep
from vae_lab.build import build
from vae_lab.checks import ConfigError, choice, number, positive_int
from vae_lab.diagnostics import CollapseWatch
from vae_lab.metrics import evaluate
from vae_lab.model import VAE, objective
from vae_lab.priors import MC_KL_NOTE
from vae_lab.pictures import log_pictures
from vae_lab.run_log import RunLog
from vae_lab.threads import set_threads

log = logging.getLogger("vae_lab")


def check_root(cfg):
    """Keys outside the config groups; each group's class checks its own keys."""
    positive_int("latent_dim", cfg.latent_dim)
    number("seed", cfg.seed, low=0, integer=True)
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


def build_model(cfg, data):
    model = VAE(
        encoder=build("encoder", cfg.encoder, in_shape=data.shape, latent_dim=cfg.latent_dim),
        decoder=build("decoder", cfg.decoder, out_shape=data.shape, latent_dim=cfg.latent_dim),
        likelihood=build("likelihood", cfg.likelihood, shape=data.shape),
        prior=build("prior", cfg.prior, latent_dim=cfg.latent_dim, in_shape=data.shape),
    )
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
    optimizer = build("optimizer", cfg.optimizer)(model.parameters())
    t = cfg.trainer
    steps_per_epoch = math.ceil(data.size("train") / t.batch_size)
    total = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    kl_schedule = build("kl", cfg.kl, total_steps=max(total, 1))
    recon_scale = 1.0 if cfg.loss.reduction == "sum" else 1.0 / data.num_pixels
    generators = {name: torch.Generator(device=device).manual_seed(cfg.seed * 7919 + i)
                  for i, name in enumerate(("noise", "binarize"))}

    step, best_elbo = 0, -math.inf
    if resume_from is not None:
        try:
            model.load_state_dict(resume_from["model"])
            optimizer.load_state_dict(resume_from["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ConfigError(f"resume={cfg.resume}: checkpoint does not fit this model ({str(e).splitlines()[0]})") from None
        checkpoint.set_rng_state(resume_from["rng"], generators)
        step, best_elbo = resume_from["step"], resume_from["best_elbo"]
        log.info("resuming %s at step %d of %d", cfg.resume, step, total)
    runlog = RunLog(run_dir, purge_step=step + 1 if resume_from else None)
    if cfg.loss.reduction == "mean":
        warn_mean_reduction(kl_schedule.beta, data.num_pixels)

    collapse_watch = CollapseWatch(cfg.eval.get("collapse_patience", 2))

    def save(name):
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "best_elbo": best_elbo, "rng": checkpoint.rng_state(generators)}
        checkpoint.save_atomic(state, run_dir / "checkpoints" / name)

    def validate():
        nonlocal best_elbo
        figures = evaluate(model, data, "val", cfg.eval.max_images, cfg.eval.batch_size, seed=cfg.seed,
                           iwae_k=cfg.eval.get("iwae_k", 0), mi_images=cfg.eval.get("mi_images", 1000))
        runlog.evaluation("val", figures, step, epoch=step / steps_per_epoch)
        collapse_watch.update(figures, step)
        log_pictures(runlog, model, data, "val", figures, step, run_dir / "figures", seed=cfg.seed, plots=False)
        if figures["elbo"] > best_elbo:
            best_elbo = figures["elbo"]
            save("best.pt")
        return figures

    model.train()
    # Opt-in speed-ups, off by default; scripts/bench.py measures them against the fp32 eager step.
    step_model = torch.compile(model) if t.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    acc = torch.zeros(3, device=device)  # running sums of loss, recon_ll, kl since the last log
    acc_steps, weight_sum, window_images, order, order_epoch, figures = 0, 0.0, 0, None, -1, None
    train_s = logged_train_s = 0.0  # seconds spent training (evaluation and checkpoints excluded)
    start_step, wall_start = step, time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    tick = time.perf_counter()
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
        optimizer.step()
        step += 1
        acc += torch.stack([loss.detach(), terms.recon_ll.detach().mean(), terms.kl.detach().sum(1).mean()])
        acc_steps, weight_sum, window_images = acc_steps + 1, weight_sum + kl_schedule.weight(step - 1), window_images + len(x)
        bar.update(1)

        if step % t.log_every == 0 or step == total:
            loss_v, rec, kl = (acc / acc_steps).tolist()  # the only host sync between evaluations
            if not math.isfinite(loss_v):
                raise ConfigError(f"training diverged at step {step}: loss {loss_v} (recon_nll {-rec}, kl {kl})")
            now = time.perf_counter()
            train_s, tick = train_s + now - tick, now
            w = weight_sum / acc_steps
            scalars = {"loss": loss_v, "elbo": rec - kl, "recon_nll": -rec, "kl": kl, "kl_weight": w,
                       "images_per_s": window_images / max(train_s - logged_train_s, 1e-9)}
            if recon_scale != 1.0:
                scalars["effective_beta"] = w / recon_scale
            runlog.scalars("train", scalars, step)
            bar.set_postfix(elbo=f"{rec - kl:.1f}", recon=f"{-rec:.1f}", kl=f"{kl:.2f}", refresh=False)
            acc.zero_()
            acc_steps, weight_sum, window_images, logged_train_s = 0, 0.0, 0, train_s
        stopping = t.stop_at_step is not None and start_step < t.stop_at_step <= step < total
        if step % t.eval_every == 0 or step == total or step % t.checkpoint_every == 0 or stopping:
            train_s += time.perf_counter() - tick
            if (step % t.eval_every == 0 or step == total) and not stopping:
                figures = validate()
            save("last.pt")
            tick = time.perf_counter()
        if stopping:
            bar.close()
            log.info("stopped at step %d (trainer.stop_at_step); continue with: vae-train resume=%s", step, run_dir)
            runlog.close()
            return {"status": "stopped", "steps": step}
    bar.close()
    train_s += time.perf_counter() - tick

    if figures is None:  # nothing trained in this invocation (e.g. epochs=0, or resuming a finished run)
        figures = validate()
        save("last.pt")
    images = (step - start_step) * t.batch_size
    summary = {"status": "completed", **{k: v for k, v in figures.items() if k != "kl_per_dim"},
               "kl_per_dim": figures["kl_per_dim"], "steps": step, "epochs": step / steps_per_epoch,
               "wall_s": time.perf_counter() - wall_start,
               "images_per_s": images / train_s if train_s > 0 else 0.0, "run_dir": str(run_dir)}
    runlog.summary(summary)
    runlog.hparams(cfg)
    runlog.close()
    return summary


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
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # a failed job is recorded in its summary.json; the sweep goes on
        summary = sweep.run_job(run, cfg, HydraConfig.get().runtime.output_dir)
    else:
        try:
            summary = run(cfg)
        except ConfigError as e:
            raise SystemExit(f"vae-train: error: {e}")
    return summary.get(cfg.objective)  # what a sweeper such as hydra/sweeper=optuna optimises


def run(cfg):
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    set_threads(cfg.threads, HydraConfig.get().launcher)
    if cfg.resume is not None:
        cfg = resumed_config(cfg)
        run_dir = Path(cfg.resume)
    summary = train(cfg, run_dir)
    if summary["status"] == "completed":
        report(summary)
    return summary


def resumed_config(cfg):
    """The config the run was started with; `resume` itself is the only key taken from the command line."""
    path = Path(cfg.resume) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume={cfg.resume}: not a vae_lab run directory (no {path})")
    saved = OmegaConf.load(path)
    saved.resume = str(cfg.resume)
    return saved


if __name__ == "__main__":
    main()
