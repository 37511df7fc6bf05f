"""SAP (Kumar et al. 2018) as disentanglement_lib computes it for discrete factors: one linear SVM per dimension."""
import warnings

import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, train_test_codes
from vae_lab.progress import bar as progress_bar


def sap_codes(train_codes, train_factors, test_codes, test_factors, names=None, seed=0, bar=None):
    """SAP of given codes for discrete factors: the score matrix S (D, K) holds the test accuracy of
    LinearSVC(C=0.01, class_weight="balanced") fit on code dimension i alone to predict factor k; the score is the
    mean over factors of the gap between the two largest entries of S's column. Not invariant to a code's scale:
    C regularises the weight and the intercept, so a dimension multiplied by 10 can score differently."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: vae-train never pays for sklearn
    from sklearn.svm import LinearSVC

    x_train, x_test = as_numpy(train_codes), as_numpy(test_codes)
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    names = list(names or [f"factor{k}" for k in range(y_train.shape[1])])
    scores = np.zeros((x_train.shape[1], y_train.shape[1]))
    unconverged = 0
    for i in range(x_train.shape[1]):
        for k in range(y_train.shape[1]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                # The primal solver: the optimum of the dual one disentanglement_lib's scikit-learn defaulted to,
                # also reached where the dual one does not converge (a code with a wide range); docs/metrics.md
                model = LinearSVC(C=0.01, class_weight="balanced", dual=False, random_state=seed)
                model.fit(x_train[:, i : i + 1], y_train[:, k])
            unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            scores[i, k] = np.mean(model.predict(x_test[:, i : i + 1]) == y_test[:, k])
            if bar is not None:
                bar.update(1)
    top = np.sort(scores, axis=0)[::-1]  # (D, K), descending in each column
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return {"score": float(gaps.mean()), "per_factor": dict(zip(names, gaps.tolist())),
            "score_matrix": scores.tolist(), "unconverged_fits": int(unconverged)}


def sap(represent, data, n_train=10_000, n_test=5_000, seed=0, batch_size=2048, progress=False):
    """Kumar et al. 2018, sec. 3, as disentanglement_lib computes it for discrete factors (evaluation/metrics/
    sap_score.py, continuous_factors=False). Returns {"score", "per_factor", "score_matrix" (D x K),
    "unconverged_fits"}."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "sap")
    with progress_bar(train[0].shape[1] * len(data.factor_sizes), "sap: fit", "fit", enabled=progress, unit_scale=True) as bar:
        return sap_codes(*train, *test, names=data.factor_names, seed=seed, bar=bar)


METRIC = Metric(
    "sap", sap,
    full={"n_train": 10_000, "n_test": 5_000},  # disentanglement_lib unsupervised_study_v1/metric_configs/sap_score.gin
    quick={"n_train": 2_000, "n_test": 1_000},
    headline=("score",),
)
