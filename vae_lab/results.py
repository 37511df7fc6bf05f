"""The keys of every result vae_lab writes, each defined once: what `measure()` returns (the val/ results of
metrics.jsonl and summary.json, and the test results of eval.json), what vae-train adds in summary.json and what
vae-eval adds in eval.json. ("Figures" are the PNGs under <run>/figures/, listed in eval.json's `figures`.)

Torch-free: vae-compare reads hundreds of runs with it. Every key has a role:

    MEASUREMENT  what measuring the model found (a number or a verdict): what tables, plots and sweeps compare
    DETAIL       what explains a measurement: per-dimension lists, notes, nested results
    BOOKKEEPING  how and on what it was measured, and where the run stands: sizes, steps, times, status

Keys stay top-level in the JSON files, with these names, because scripts read them by name. Each disentanglement
metric adds its headline measurements to eval.json as `metric_key(metric, part)` (the parts are in its record,
vae_lab.measure.disentanglement; each key is declared in DISENTANGLEMENT, a test keeps the two equal) and its whole
result under `disentanglement`; on sampled codes the same keys end in
`_sampled` (`disentanglement_sampled`).
"""
from typing import NamedTuple

MEASUREMENT, DETAIL, BOOKKEEPING = "measurement", "detail", "bookkeeping"


class Key(NamedTuple):
    name: str
    role: str  # MEASUREMENT, DETAIL or BOOKKEEPING
    fmt: str  # how a table prints it
    note: str | None  # the key that says why the value is null, where it can be
    meaning: str


def table(text):
    """Keys from a table with one key a line: name, role, format, note (- for none), then its meaning."""
    rows = (line.split(None, 4) for line in text.strip().splitlines())
    return tuple(Key(name, role, fmt, None if note == "-" else note, meaning) for name, role, fmt, note, meaning in rows)


# measure(): one evaluation of a model on a split, in nats per image. Optional keys appear only where they apply:
# iwae_* with an IWAE bound (k > 0), decomposition_note for a prior that is not factorised, mig_dlib* for data with
# ground-truth factors.
MEASURE = table("""
elbo                  measurement .2f -                  the ELBO, E_q[log p(x|z)] - KL
recon_nll             measurement .2f -                  -E_q[log p(x|z)], summed over pixels
kl                    measurement .3f -                  KL(q(z|x) || p(z)), summed over latent dimensions
bits_per_dim          measurement .4f bits_per_dim_note  -ELBO in bits per pixel and channel, where that is a code length
iwae_nll              measurement .2f -                  the k-sample IWAE bound on -log p(x) (Burda et al. 2016)
index_code_mi         measurement .3f -                  I_q(z; n), the KL decomposition's first term (at most log N)
total_correlation     measurement .3f -                  KL(q(z) || prod_j q(z_j))
dimwise_kl            measurement .3f decomposition_note sum_j KL(q(z_j) || p(z_j)); null where p(z) does not factorise
active_units          measurement d   -                  latent dimensions with Cov_x(E_q[z_j]) > 0.01 (Burda et al. 2016)
mig_dlib              measurement .3f -                  MIG of the split's posterior means (disentanglement_lib's estimator)
collapse              measurement s   -                  ok | partial | collapsed: is the code used
bits_per_dim_note     detail      s   -                  why bits_per_dim is, or is not, a code length
decomposition_note    detail      s   -                  why dimwise_kl is null
collapse_reason       detail      s   -                  the active units and KL behind the collapse verdict
kl_per_dim            detail      .3f -                  KL per latent dimension (one entry where the KL does not split)
kl_per_dim_sorted     detail      .3f -                  [[dimension, KL], ...], largest first
posterior_mean_var    detail      .3f -                  Var_x(E_q[z_j]) per latent dimension
mig_dlib_per_factor   detail      .3f -                  mig_dlib's gap per factor
iwae_elbo             detail      .2f -                  the ELBO of the images the IWAE bound is computed on
images                bookkeeping d   -                  images of the split evaluated
decomposition_images  bookkeeping d   -                  images in the KL decomposition (N)
iwae_k                bookkeeping d   -                  importance samples per image
iwae_images           bookkeeping d   -                  images the IWAE bound is computed on
""")

# summary.json beyond measure()'s keys (which a completed run has, from its final validation)
TRAINING = table("""
status                bookkeeping s   -                  completed | stopped | interrupted | diverged | failed (rundir.Status)
error                 bookkeeping s   -                  why a run diverged or failed, in one line
message               bookkeeping s   -                  where a stopped run stands and how to continue it
signal                bookkeeping s   -                  the signal that stopped the run, or null
exit_code             bookkeeping d   -                  128 + the signal's number, or 0
steps                 bookkeeping d   -                  optimiser steps taken
epochs                bookkeeping .3f -                  passes over the training split
skipped_steps         bookkeeping d   -                  steps dropped by trainer.nonfinite=skip
processes             bookkeeping d   -                  processes the run trained on
wall_s                bookkeeping .1f -                  seconds from setup to the end
images_per_s          bookkeeping .0f -                  training images per second, evaluation and checkpoints excluded
run_dir               bookkeeping s   -                  the run directory
stack                 bookkeeping s   -                  the stack it was trained in (hydra/launcher=stacked): its id and members
""")

# eval.json beyond measure()'s keys and the disentanglement metrics' headlines (DISENTANGLEMENT)
EVALUATION = table("""
run                   bookkeeping s   -                  the run directory evaluated
checkpoint            bookkeeping s   -                  last.pt or best.pt
step                  bookkeeping d   -                  the checkpoint's step
split                 bookkeeping s   -                  test
prior                 bookkeeping s   -                  the prior's class
kl_estimate           bookkeeping s   -                  analytic, or the single-sample Monte-Carlo estimate
disentanglement       detail      s   -                  each metric's whole result, its protocol, seconds and scikit-learn version
metrics_note          detail      s   -                  the metrics asked for that were left out, and why (no factors; UDR on one run)
udr_detail            detail      s   -                  UDR's set of runs, the pairwise scores, sizes, seed and seconds (vae-eval runs=[...] or sweep=)
representation        bookkeeping s   -                  mean | sampled | both: the codes the disentanglement metrics scored
disentanglement_sampled detail    s   -                  as disentanglement, on one z ~ q(z|x) per image (representation sampled or both)
figures               bookkeeping s   -                  the PNG files written, relative to the run directory
evaluate_s            bookkeeping .1f -                  seconds spent measuring
wall_s                bookkeeping .1f -                  seconds from start to end
""")
# eval.json's disentanglement headlines (each metric's record in vae_lab/measure/disentanglement/ names its parts;
# mig_dlib is in MEASURE, training measures it too). On sampled codes the same keys end in _sampled (metric_key).
DISENTANGLEMENT = table("""
mig_chen              measurement .3f -                  MIG as Chen et al. 2018 compute it (one z per image, entropies of the posterior mixture)
factor_vae            measurement .3f -                  the FactorVAE score (Kim & Mnih 2018), disentanglement_lib's
dci_disentanglement   measurement .3f -                  DCI's D (Eastwood & Williams 2018), boosted trees as disentanglement_lib
dci_completeness      measurement .3f -                  DCI's C (Eastwood & Williams 2018)
dci_informativeness_test measurement .3f -               DCI's I: the trees' test accuracy, mean over factors
dci_explicitness      measurement .3f -                  DCI-ES's E (Eastwood et al. 2023): 1 - area under the loss-capacity curve of random-feature probes
dci_size              measurement .3f -                  DCI-ES's S (Eastwood et al. 2023): factors / code dimensions
sap                   measurement .3f -                  the SAP score (Kumar et al. 2018), disentanglement_lib's
beta_vae              measurement .3f -                  the beta-VAE score (Higgins et al. 2017), disentanglement_lib's
infom                 measurement .3f -                  InfoM, InfoMEC's modularity (Hsu et al. 2023): NMI of each dimension with its best factor
infoe                 measurement .3f -                  InfoE, InfoMEC's explicitness (Hsu et al. 2023): logistic regression's predictive information
infoc                 measurement .3f -                  InfoC, InfoMEC's compactness (Hsu et al. 2023): NMI of each factor with its best dimension
gaussian_total_correlation measurement .3f -             total correlation of a Gaussian of the code's covariance, nats (disentanglement_lib's unsupervised)
gaussian_wasserstein_correlation measurement .3f -       squared W2 between that Gaussian and its marginals' product (disentanglement_lib's unsupervised)
gaussian_wasserstein_correlation_norm measurement .3f -  gaussian_wasserstein_correlation / the covariance's trace
mutual_info_score     measurement .3f -                  mean MI of two binned code dimensions, nats (disentanglement_lib's unsupervised)
modularity_ridgeway   measurement .3f -                  modularity (Ridgeway & Mozer 2018): each dimension's MI with its best factor against the rest
explicitness_ridgeway measurement .3f -                  explicitness (Ridgeway & Mozer 2018): one-vs-rest logistic regression's test AUC
irs                   measurement .3f -                  interventional robustness (Suter et al. 2019), disentanglement_lib's
downstream_logreg_10_test_accuracy measurement .3f - downstream task: logistic regression's test accuracy from 10 training points, mean over factors
downstream_logreg_100_test_accuracy measurement .3f - downstream task: logistic regression's test accuracy from 100 training points, mean over factors
downstream_gbt_10_test_accuracy measurement .3f - downstream task: boosted trees' test accuracy from 10 training points, mean over factors
downstream_gbt_100_test_accuracy measurement .3f - downstream task: boosted trees' test accuracy from 100 training points, mean over factors
downstream_gbt_1000_test_accuracy measurement .3f - downstream task: boosted trees' test accuracy from 1000 training points, mean over factors
downstream_reduced_factor_test_accuracy measurement .3f - reduced downstream task: a factor's accuracy with its most important dimension removed
downstream_reduced_others_test_accuracy measurement .3f - reduced downstream task: the other factors' accuracy without that dimension
downstream_strong_test_accuracy measurement .3f - strong downstream task: accuracy on the test points
downstream_strong_intervened_test_accuracy measurement .3f - strong downstream task: accuracy once a factor is intervened on
downstream_strong_generalization_gap measurement .3f - strong downstream task: the accuracy lost under intervention
fairness_mean         measurement .3f -                  unfairness (Locatello et al. 2019), mean over sensitive and target factor pairs
fairness_max          measurement .3f -                  unfairness, its largest over the pairs
unified_gbt_dci_disentanglement measurement .3f - unified scores (disentanglement_lib): DCI's D of the gbt importance matrix
unified_gbt_dci_completeness measurement .3f - unified scores (disentanglement_lib): DCI's C of the gbt importance matrix
unified_gbt_mig measurement .3f - unified scores (disentanglement_lib): MIG of the gbt importance matrix
unified_gbt_sap measurement .3f - unified scores (disentanglement_lib): SAP of the gbt importance matrix
unified_gbt_modularity measurement .3f - unified scores (disentanglement_lib): modularity of the gbt importance matrix
unified_gbt_area_precision measurement .3f - unified scores (disentanglement_lib): the precision curve's area of the gbt importance matrix
unified_mi_dci_disentanglement measurement .3f - unified scores (disentanglement_lib): DCI's D of the mi importance matrix
unified_mi_dci_completeness measurement .3f - unified scores (disentanglement_lib): DCI's C of the mi importance matrix
unified_mi_mig measurement .3f - unified scores (disentanglement_lib): MIG of the mi importance matrix
unified_mi_sap measurement .3f - unified scores (disentanglement_lib): SAP of the mi importance matrix
unified_mi_modularity measurement .3f - unified scores (disentanglement_lib): modularity of the mi importance matrix
unified_mi_area_precision measurement .3f - unified scores (disentanglement_lib): the precision curve's area of the mi importance matrix
unified_svm_dci_disentanglement measurement .3f - unified scores (disentanglement_lib): DCI's D of the svm importance matrix
unified_svm_dci_completeness measurement .3f - unified scores (disentanglement_lib): DCI's C of the svm importance matrix
unified_svm_mig measurement .3f - unified scores (disentanglement_lib): MIG of the svm importance matrix
unified_svm_sap measurement .3f - unified scores (disentanglement_lib): SAP of the svm importance matrix
unified_svm_modularity measurement .3f - unified scores (disentanglement_lib): modularity of the svm importance matrix
unified_svm_area_precision measurement .3f - unified scores (disentanglement_lib): the precision curve's area of the svm importance matrix
udr                   measurement .3f -                  UDR (Duan et al. 2020): how alike this run's code is to other seeds', median over them
""")

# What vae-train prints at the end, and the measurements a sweeper can optimise (`objective`)
HEADLINE = ("elbo", "recon_nll", "kl", "bits_per_dim", "active_units")

# Keys written under another name by runs made before the rename: read as the new name
RENAMED = {"mig": "mig_dlib", "mig_per_factor": "mig_dlib_per_factor"}

KEYS = {k.name: k for k in (*MEASURE, *TRAINING, *EVALUATION, *DISENTANGLEMENT)}
MEASURED = tuple(k.name for k in MEASURE)


def names(keys, role):
    """The names of `keys` that have `role`, in order."""
    return tuple(k.name for k in keys if k.role == role)


# The codes a disentanglement metric can score (vae-eval's `representation`): the posterior means, the field's
# convention, or one z ~ q(z|x) per image; disentanglement_lib scores every model on both
# (config/unsupervised_study_v1/postprocess_configs/mean.gin, sampled.gin).
REPRESENTATIONS = ("mean", "sampled")


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
