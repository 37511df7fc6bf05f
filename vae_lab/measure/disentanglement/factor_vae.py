"""The FactorVAE score (Kim & Mnih 2018) as disentanglement_lib computes it: a majority vote of least-variance dims."""
import numpy as np
import torch

from vae_lab.measure.disentanglement.base import (
    Metric,
    check_factors,
    encode_factors,
    generators,
    sample_codes,
)
from vae_lab.progress import bar as progress_bar


def _fix_one_factor(data, m, batch, generator):
    """m groups of `batch` factor vectors, one factor (index k (m,)) fixed within each group: (k, factors (m, L, K))."""
    k = torch.randint(len(data.factor_sizes), (m,), generator=generator)
    factors = data.sample_factors(m * batch, generator).view(m, batch, -1)
    rows = torch.arange(m)
    factors[rows, :, k] = factors[rows, :1, k].expand(m, batch)  # the first image's value of factor k for all
    return k.numpy(), factors


def _votes(represent, data, n_votes, batch, g, image_g, global_var, active, batch_size, bar):
    """(K, active dims) votes: for each of n_votes groups of `batch` images sharing one factor k, the active
    dimension with the least variance relative to its global variance votes for k."""
    votes = np.zeros((len(data.factor_sizes), int(active.sum())), dtype=np.int64)
    per_call = max(1, batch_size // batch)
    for start in range(0, n_votes, per_call):
        m = min(per_call, n_votes - start)
        k, factors = _fix_one_factor(data, m, batch, g)
        codes = encode_factors(represent, data, factors.view(m * batch, -1), image_g, m * batch)
        local_var = codes.reshape(m, batch, -1).var(1, ddof=1)  # (m, D)
        np.add.at(votes, (k, np.argmin(local_var[:, active] / global_var[active], axis=1)), 1)
        bar.update(m)
    return votes


def factor_vae_score(represent, data, n_var=10_000, n_train=10_000, n_eval=5_000, batch=64, threshold=0.05, seed=0,
                     batch_size=2048, progress=False):
    """Kim & Mnih 2018, sec. 4, as disentanglement_lib computes it (evaluation/metrics/factor_vae.py): each
    dimension's variance over n_var random images; dimensions with standard deviation below `threshold` pruned;
    a vote per group of `batch` images sharing one factor (argmin of local / global variance); the majority-vote
    classifier (dimension -> its most frequent factor) fit on n_train votes, its accuracy on those and on n_eval new
    ones. Returns {"train_accuracy", "eval_accuracy", "num_active_dims"}; num_active_dims counts the dimensions
    kept (disentanglement_lib reports the length of its boolean mask, i.e. every dimension).
    """
    check_factors(data)
    g, image_g = generators(data, seed)
    with progress_bar(n_var, "factor_vae: variances", "img", enabled=progress, unit_scale=True) as bar:
        codes, _ = sample_codes(represent, data, n_var, g, image_g, batch_size, bar)
    global_var = codes.var(0, ddof=1)  # (D,)
    active = np.sqrt(global_var) >= threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    with progress_bar(n_train + n_eval, "factor_vae: votes", "vote", enabled=progress, unit_scale=True) as bar:
        train = _votes(represent, data, n_train, batch, g, image_g, global_var, active, batch_size, bar)
        classifier = train.argmax(0)  # (active dims,) the factor each dimension predicts
        columns = np.arange(train.shape[1])
        evaluation = _votes(represent, data, n_eval, batch, g, image_g, global_var, active, batch_size, bar)
    return {"train_accuracy": float(train[classifier, columns].sum() / train.sum()),
            "eval_accuracy": float(evaluation[classifier, columns].sum() / evaluation.sum()),
            "num_active_dims": int(active.sum())}


METRIC = Metric(
    "factor_vae", factor_vae_score,
    # disentanglement_lib unsupervised_study_v1/metric_configs/factor_vae_metric.gin
    full={"n_var": 10_000, "n_train": 10_000, "n_eval": 5_000, "batch": 64},
    quick={"n_var": 5_000, "n_train": 1_000, "n_eval": 500, "batch": 64},
    headline=("eval_accuracy",),
)
