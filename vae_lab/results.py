"""The keys of every result vae_lab writes, each defined once: what `measure()` returns (the val/ results of
metrics.jsonl and summary.json, and the test results of eval.json), what vae-train adds in summary.json and what
vae-eval adds in eval.json. ("Figures" are the PNGs under <run>/figures/, listed in eval.json's `figures`.)

Torch-free: vae-compare reads hundreds of runs with it. Every key has a role:

    MEASUREMENT  what measuring the model found (a number or a verdict): what tables, plots and sweeps compare
    DETAIL       what explains a measurement: per-dimension lists, notes, nested results
    BOOKKEEPING  how and on what it was measured, and where the run stands: sizes, steps, times, status

Keys stay top-level in the JSON files, with these names, because scripts read them by name. Each disentanglement
metric adds its headline measurements to eval.json as `metric_key(metric, part)` (the parts are in its record,
vae_lab.measure.disentanglement) and its whole result under `disentanglement`.
"""
from typing import NamedTuple

MEASUREMENT, DETAIL, BOOKKEEPING = "measurement", "detail", "bookkeeping"


class Key(NamedTuple):
    name: str
    role: str
    meaning: str
    fmt: str = ".3f"  # how a table prints it
    note: str = ""  # the key that says why the value is null, where it can be


# measure(): one evaluation of a model on a split, in nats per image. Optional keys appear only where they apply:
# iwae_* with an IWAE bound (k > 0), decomposition_note for a prior that is not factorised, mig_dlib* for data with
# ground-truth factors.
MEASURE = (
    Key("elbo", MEASUREMENT, "the ELBO, E_q[log p(x|z)] - KL", ".2f"),
    Key("recon_nll", MEASUREMENT, "-E_q[log p(x|z)], summed over pixels", ".2f"),
    Key("kl", MEASUREMENT, "KL(q(z|x) || p(z)), summed over latent dimensions"),
    Key("bits_per_dim", MEASUREMENT, "-ELBO in bits per pixel and channel, where that is a code length", ".4f",
        note="bits_per_dim_note"),
    Key("iwae_nll", MEASUREMENT, "the k-sample IWAE bound on -log p(x) (Burda et al. 2016)", ".2f"),
    Key("index_code_mi", MEASUREMENT, "I_q(z; n), the KL decomposition's first term (at most log of its images)"),
    Key("total_correlation", MEASUREMENT, "KL(q(z) || prod_j q(z_j))"),
    Key("dimwise_kl", MEASUREMENT, "sum_j KL(q(z_j) || p(z_j)); null for a prior that is not factorised",
        note="decomposition_note"),
    Key("active_units", MEASUREMENT, "latent dimensions with Cov_x(E_q[z_j]) > 0.01 (Burda et al. 2016)", "d"),
    Key("mig_dlib", MEASUREMENT, "MIG of the posterior means of the split's images (disentanglement_lib's estimator)"),
    Key("collapse", MEASUREMENT, "ok | partial | collapsed: is the code used", "s"),
    Key("bits_per_dim_note", DETAIL, "why bits_per_dim is, or is not, a code length", "s"),
    Key("decomposition_note", DETAIL, "why dimwise_kl is null", "s"),
    Key("collapse_reason", DETAIL, "active units and KL behind the collapse verdict", "s"),
    Key("kl_per_dim", DETAIL, "KL per latent dimension (one entry where the KL does not split)"),
    Key("kl_per_dim_sorted", DETAIL, "[[dimension, KL], ...], largest first"),
    Key("posterior_mean_var", DETAIL, "Var_x(E_q[z_j]) per latent dimension"),
    Key("mig_dlib_per_factor", DETAIL, "mig_dlib's gap per factor"),
    Key("iwae_elbo", DETAIL, "the ELBO of the images the IWAE bound is computed on", ".2f"),
    Key("images", BOOKKEEPING, "images of the split evaluated", "d"),
    Key("decomposition_images", BOOKKEEPING, "images in the KL decomposition", "d"),
    Key("iwae_k", BOOKKEEPING, "importance samples per image", "d"),
    Key("iwae_images", BOOKKEEPING, "images the IWAE bound is computed on", "d"),
)

# summary.json beyond measure()'s keys (which a completed run has, from its final validation)
TRAINING = (
    Key("status", BOOKKEEPING, "completed | stopped | interrupted | diverged | failed (vae_lab.rundir.Status)", "s"),
    Key("error", BOOKKEEPING, "why a run diverged or failed, in one line", "s"),
    Key("message", BOOKKEEPING, "where a stopped run stands and how to continue it", "s"),
    Key("signal", BOOKKEEPING, "the signal that stopped the run, or null", "s"),
    Key("exit_code", BOOKKEEPING, "128 + the signal's number, or 0", "d"),
    Key("steps", BOOKKEEPING, "optimiser steps taken", "d"),
    Key("epochs", BOOKKEEPING, "passes over the training split"),
    Key("skipped_steps", BOOKKEEPING, "steps dropped by trainer.nonfinite=skip", "d"),
    Key("processes", BOOKKEEPING, "processes the run trained on", "d"),
    Key("wall_s", BOOKKEEPING, "seconds from setup to the end", ".1f"),
    Key("images_per_s", BOOKKEEPING, "training images per second, evaluation and checkpoints excluded", ".0f"),
    Key("run_dir", BOOKKEEPING, "the run directory", "s"),
)

# eval.json beyond measure()'s keys and the disentanglement metrics' headlines
EVALUATION = (
    Key("run", BOOKKEEPING, "the run directory evaluated", "s"),
    Key("checkpoint", BOOKKEEPING, "last.pt or best.pt", "s"),
    Key("step", BOOKKEEPING, "the checkpoint's step", "d"),
    Key("split", BOOKKEEPING, "test", "s"),
    Key("prior", BOOKKEEPING, "the prior's class", "s"),
    Key("kl_estimate", BOOKKEEPING, "analytic, or the single-sample Monte-Carlo estimate", "s"),
    Key("disentanglement", DETAIL, "each metric's whole result, its protocol, seconds and scikit-learn version"),
    Key("figures", BOOKKEEPING, "the PNG files written, relative to the run directory"),
    Key("evaluate_s", BOOKKEEPING, "seconds spent measuring", ".1f"),
    Key("wall_s", BOOKKEEPING, "seconds from start to end", ".1f"),
)

# What vae-train prints at the end, and the measurements a sweeper can optimise (`objective`)
HEADLINE = ("elbo", "recon_nll", "kl", "bits_per_dim", "active_units")

# Keys written under another name by runs made before the rename: read as the new name
RENAMED = {"mig": "mig_dlib", "mig_per_factor": "mig_dlib_per_factor"}

KEYS = {k.name: k for k in (*MEASURE, *TRAINING, *EVALUATION)}
MEASURED = tuple(k.name for k in MEASURE)


def names(keys, role):
    """The names of `keys` that have `role`, in order."""
    return tuple(k.name for k in keys if k.role == role)


def metric_key(metric, part=None, representation="mean"):
    """The eval.json key of a disentanglement metric's headline `part` (None: the metric's only headline), measured
    on `representation` of the code: the posterior means (the field's convention, no suffix) or e.g. "sampled"."""
    name = metric if part is None else f"{metric}_{part}"
    return name if representation == "mean" else f"{name}_{representation}"


def upgrade(result):
    """A summary.json or eval.json as read, with keys renamed since it was written given their current names (a
    key written under both names keeps the current one's value)."""
    out = {RENAMED.get(k, k): v for k, v in result.items() if k not in RENAMED or RENAMED[k] not in result}
    return {**out, **{k: v for k, v in result.items() if k in RENAMED.values()}}
