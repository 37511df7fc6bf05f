"""DCI (Eastwood & Williams 2018) as disentanglement_lib computes it: importances of gradient-boosted trees; and
DCI-ES's explicitness E and size S (Eastwood et al. 2023) beside them.

E (sec. 4 of DCI-ES) is the area above a loss-capacity curve: the test loss 1 - R^2 of a probe predicting each
factor, against the probe's capacity. The probe family here is one of the reference's (andreinicolicioiu/DCI-ES:
random Fourier features and a learned linear layer): a least-squares linear readout of the standardised code and m
random Fourier features cos(Wz + b), W ~ N(0, I), b ~ U[0, 2 pi) (Rahimi & Recht 2007), for m in 0, 4, 16, ...,
`max_features`; m = 0 is the linear probe. A capacity is the readout's parameter count D + 1 + m, on a log axis as
the reference's gather script puts the non-tree probes. Trees (the reference's other family) would make E depend on
the code's axes; these probes see a rotated code as the same code up to W's distribution, so E is invariant to
rotations, as the paper's linear identifiability link expects.
"""
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


def feature_counts(max_features):
    """The random-feature counts of the probes: 0 (the linear probe), then 4, 16, 64, ... up to `max_features`."""
    return [0, *(4**k for k in range(1, 32) if 4**k <= max_features)]


def explicitness(capacities, losses, baseline=1.0):
    """DCI-ES's E of one factor's loss-capacity curve: 1 - AULCC / Z, AULCC the trapezoid area under the curve of
    the best loss up to each capacity (the reference's running minimum), losses clipped to [0, baseline], and Z =
    baseline * (c_max - c_min), the area under a curve that stays at the baseline (a constant predictor's loss).
    The lowest loss is taken as 0, a perfect readout, rather than the curve's own minimum (the reference's): a code
    with no information about the factor then scores 0 where the reference divides 0 by 0; the reference's code
    also doubles the area (its E falls to 0 on a straight line from the baseline to 0), which the paper's formula
    does not. 1: the smallest probe already predicts the factor exactly."""
    x = np.asarray(capacities, dtype=np.float64)
    y = np.minimum.accumulate(np.clip(np.asarray(losses, dtype=np.float64), 0, baseline))
    if len(x) < 2 or x[-1] <= x[0]:
        return float(1 - y[0] / baseline)
    area = float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())
    return 1 - area / (baseline * (x[-1] - x[0]))


def loss_capacity(train_codes, train_factors, test_codes, test_factors, max_features=1024, seed=0, ridge=1e-6):
    """Test losses 1 - R^2 (one row per probe size m, one column per factor) of the random-Fourier-feature probes
    of every factor at once (one least-squares fit per m, `ridge` times the mean diagonal of the Gram matrix added
    for stability), and their capacities log(D + 1 + m). Codes are standardised with the training sample's mean and
    deviation (constant dimensions left as they are)."""
    x_train, x_test = as_numpy(train_codes), as_numpy(test_codes)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std  # (N, D)
    y_train, y_test = np.asarray(train_factors, np.float64), np.asarray(test_factors, np.float64)  # (N, K)
    counts = feature_counts(max_features)
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((x_train.shape[1], counts[-1])), rng.uniform(0, 2 * np.pi, counts[-1])

    def design(x, m):  # (N, 1 + D + m): intercept, the code, m random Fourier features
        return np.concatenate([np.ones((len(x), 1)), x, np.sqrt(2 / max(m, 1)) * np.cos(x @ w[:, :m] + b[:m])], 1)

    total = ((y_test - y_test.mean(0)) ** 2).sum(0)  # (K,)
    losses = []
    for m in counts:
        a = design(x_train, m)
        gram = a.T @ a
        gram[np.diag_indices_from(gram)] += ridge * np.trace(gram) / len(gram)
        residual = ((design(x_test, m) @ np.linalg.solve(gram, a.T @ y_train) - y_test) ** 2).sum(0)
        losses.append(np.divide(residual, total, out=np.zeros_like(total), where=total > 0))
    return np.log([x_train.shape[1] + 1 + m for m in counts]), np.array(losses)


def dci_es_codes(train_codes, train_factors, test_codes, test_factors, max_features=1024, seed=0):
    """DCI-ES's E (the mean over factors of `explicitness`) and S = K / D, the factors' count over the code's
    dimensions (1 for a code of as many dimensions as factors, less for a larger code). Returns {"explicitness",
    "size", "explicitness_per_factor", "loss_capacity": {"capacities", "losses" (probes x K)}}."""
    capacities, losses = loss_capacity(train_codes, train_factors, test_codes, test_factors, max_features, seed)
    per_factor = [explicitness(capacities, losses[:, k]) for k in range(losses.shape[1])]
    return {"explicitness": float(np.mean(per_factor)), "size": losses.shape[1] / as_numpy(train_codes).shape[1],
            "explicitness_per_factor": per_factor,
            "loss_capacity": {"capacities": capacities.tolist(), "losses": losses.tolist()}}


def dci(represent, data, n_train=10_000, n_test=5_000, n_estimators=100, max_features=1024, seed=0, batch_size=2048,
        progress=False):
    """Eastwood & Williams 2018 as disentanglement_lib computes it (evaluation/metrics/dci.py): gradient-boosted
    trees on n_train random points, accuracy also on n_test; and DCI-ES's E and S (Eastwood et al. 2023,
    dci_es_codes) on the same points. Returns {"disentanglement", "completeness", "informativeness_train",
    "informativeness_test", "importance" (D x K), "explicitness", "size", "explicitness_per_factor",
    "loss_capacity"}."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "dci")
    with progress_bar(len(data.factor_sizes) + 1, "dci: fit", "fit", enabled=progress, unit_scale=True) as bar:
        out = dci_codes(*train, *test, n_estimators=n_estimators, seed=seed, bar=bar)
        out.update(dci_es_codes(*train, *test, max_features=max_features, seed=seed))
        bar.update(1)
    return out


METRIC = Metric(
    "dci", dci,
    # disentanglement_lib unsupervised_study_v1/metric_configs/dci.gin; 100 trees, sklearn's default
    # max_features: the largest probe of DCI-ES's loss-capacity curve (ours: the reference sweeps its own probes)
    full={"n_train": 10_000, "n_test": 5_000, "n_estimators": 100, "max_features": 1024},
    quick={"n_train": 2_000, "n_test": 1_000, "n_estimators": 20, "max_features": 256},
    headline=("disentanglement", "completeness", "informativeness_test", "explicitness", "size"),
)
