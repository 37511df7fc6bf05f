"""DCI (Eastwood & Williams 2018) as disentanglement_lib computes it: importances of gradient-boosted trees."""
import math

import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, train_test_codes
from vae_lab.progress import bar as progress_bar


def _normalised_entropy(p, base):
    """Entropy of each column of p (rows summed to 1 after +1e-11, as scipy.stats.entropy), in log base `base`."""
    p = p + 1e-11
    p = p / p.sum(0, keepdims=True)
    return -(p * np.log(p)).sum(0) / math.log(base)


def dci_scores(importance):
    """Eastwood & Williams 2018, sec. 2 (disentanglement_lib dci.py): from the importance matrix R (D codes, K
    factors), disentanglement sum_i rho_i (1 - H_K(P_i.)) with rho_i code i's share of the importance, and
    completeness sum_k rho_k (1 - H_D(P_.k)) with rho_k factor k's share. Returns (disentanglement, completeness)."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    weights = r if r.sum() > 0 else np.ones_like(r)
    per_code = 1 - _normalised_entropy(r.T, r.shape[1])  # (D,)
    per_factor = 1 - _normalised_entropy(r, r.shape[0])  # (K,)
    return (float((per_code * weights.sum(1) / weights.sum()).sum()),
            float((per_factor * weights.sum(0) / weights.sum()).sum()))


def dci_codes(train_codes, train_factors, test_codes, test_factors, n_estimators=100, seed=0, bar=None):
    """DCI of given codes (N, D) and factor classes (N, K): one GradientBoostingClassifier per factor (sklearn's
    defaults but `n_estimators`), its feature importances as R's column, informativeness its accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier  # lazy: vae-train never pays for sklearn

    x_train, x_test = as_numpy(train_codes), as_numpy(test_codes)
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    importance = np.zeros((x_train.shape[1], y_train.shape[1]))
    train_acc, test_acc = [], []
    for k in range(y_train.shape[1]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed).fit(x_train, y_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(x_train) == y_train[:, k]))
        test_acc.append(np.mean(model.predict(x_test) == y_test[:, k]))
        if bar is not None:
            bar.update(1)
    disentanglement, completeness = dci_scores(importance)
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness_train": float(np.mean(train_acc)), "informativeness_test": float(np.mean(test_acc)),
            "importance": importance.tolist()}


def dci(represent, data, n_train=10_000, n_test=5_000, n_estimators=100, seed=0, batch_size=2048, progress=False):
    """Eastwood & Williams 2018 as disentanglement_lib computes it (evaluation/metrics/dci.py): gradient-boosted
    trees on n_train random points, accuracy also on n_test. Returns {"disentanglement", "completeness",
    "informativeness_train", "informativeness_test", "importance" (D x K)}."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "dci")
    with progress_bar(len(data.factor_sizes), "dci: fit", "fit", enabled=progress, unit_scale=True) as bar:
        return dci_codes(*train, *test, n_estimators=n_estimators, seed=seed, bar=bar)


METRIC = Metric(
    "dci", dci,
    # disentanglement_lib unsupervised_study_v1/metric_configs/dci.gin; 100 trees, sklearn's default
    full={"n_train": 10_000, "n_test": 5_000, "n_estimators": 100},
    quick={"n_train": 2_000, "n_test": 1_000, "n_estimators": 20},
    headline=("disentanglement", "completeness", "informativeness_test"),
)
