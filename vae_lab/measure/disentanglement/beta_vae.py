"""The β-VAE score (Higgins et al. 2017) as disentanglement_lib computes it: which factor a pair of batches shares."""
import warnings

import numpy as np
import torch

from vae_lab.measure.disentanglement.base import Metric, check_factors, encode_factors, generators
from vae_lab.progress import bar as progress_bar


def _points(represent, data, n_points, batch, g, image_g, batch_size, bar):
    """n_points (features |z1 - z2| averaged over `batch` pairs sharing one factor k, label k)."""
    features, labels = [], []
    per_call = max(1, batch_size // (2 * batch))
    for start in range(0, n_points, per_call):
        m = min(per_call, n_points - start)
        k = torch.randint(len(data.factor_sizes), (m,), generator=g)
        first = data.sample_factors(m * batch, g).view(m, batch, -1)
        second = data.sample_factors(m * batch, g).view(m, batch, -1)
        rows = torch.arange(m)
        second[rows, :, k] = first[rows, :, k]  # each pair shares factor k
        both = torch.cat([first, second]).view(2 * m * batch, -1)
        codes = encode_factors(represent, data, both, image_g, 2 * m * batch).reshape(2, m, batch, -1)
        features.append(np.abs(codes[0] - codes[1]).mean(1))  # (m, D)
        labels.append(k.numpy())
        bar.update(m)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(represent, data, n_train=10_000, n_eval=5_000, batch=64, seed=0, batch_size=2048,
                   progress=False):
    """Higgins et al. 2017, sec. 3, as disentanglement_lib computes it (evaluation/metrics/beta_vae.py): a point is
    |z1 - z2| of posterior means averaged over `batch` pairs of images that share one factor k, its label k; a
    LogisticRegression (sklearn's defaults) fit on n_train points, accuracy there and on n_eval new ones.
    Returns {"train_accuracy", "eval_accuracy", "unconverged_fits"}."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: vae-train never pays for sklearn
    from sklearn.linear_model import LogisticRegression

    check_factors(data)
    g, image_g = generators(data, seed)
    with progress_bar(n_train + n_eval + 1, "beta_vae", "point", enabled=progress, unit_scale=True) as bar:
        x_train, y_train = _points(represent, data, n_train, batch, g, image_g, batch_size, bar)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(random_state=seed).fit(x_train, y_train)
        bar.update(1)
        x_eval, y_eval = _points(represent, data, n_eval, batch, g, image_g, batch_size, bar)
    return {"train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
            "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
            "unconverged_fits": int(any(issubclass(w.category, ConvergenceWarning) for w in caught))}


METRIC = Metric(
    "beta_vae", beta_vae_score,
    # disentanglement_lib unsupervised_study_v1/metric_configs/beta_vae_sklearn.gin
    full={"n_train": 10_000, "n_eval": 5_000, "batch": 64},
    quick={"n_train": 1_000, "n_eval": 500, "batch": 64},
    headline=("eval_accuracy",),
)
