"""Downstream accuracy with logistic regression, as disentanglement_lib's downstream task computes it: how well a
cross-validated logistic regression predicts each factor from the code, trained on 10, 100, 1,000 and 10,000 points.
"""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, check_factors, factor_accuracies, train_test_codes
from vae_lab.progress import bar as progress_bar

# Training sizes of the headlines, in the quick sizes and the full ones. Logistic regression's cross-validation fits
# 10 values of C x 5 folds per class (113 classes on sprites): its quick sizes stop at 100 points.
HEADLINE_SIZES = (10, 100)


def train_sizes(n_train, smallest_largest=100):
    """10, 100, ... below n_train, then n_train: disentanglement_lib's num_train=[10, 100, 1000, 10000] for 10,000."""
    if n_train < smallest_largest:
        raise ValueError(f"n_train={n_train}: the headlines need training sizes up to {smallest_largest:,}")
    sizes, size = [], 10
    while size < n_train:
        sizes.append(size)
        size *= 10
    return [*sizes, n_train]


def downstream(name, make_model, represent, data, n_train, n_test, seed, batch_size, progress, headline_sizes):
    """disentanglement_lib downstream_task.py, compute_downstream_task, with predictor `make_model`: for each of
    train_sizes(n_train), a fresh training sample of that size and a fresh test sample of n_test points (drawn in that
    order from one generator seeded with `seed`), one model per factor. Returns {"<size>_test_accuracy" (mean over
    factors), "<size>_train_accuracy", "<size>_min_test_accuracy", "per_size": {size: {"train_accuracy",
    "test_accuracy"} per factor}, "unconverged_fits"}."""
    check_factors(data)
    out, per_size, unconverged = {}, {}, 0
    sizes = train_sizes(n_train, max(headline_sizes))
    with progress_bar(len(sizes) * len(data.factor_sizes), f"{name}: fit", "fit", enabled=progress) as bar:
        for i, size in enumerate(sizes):
            # one seeded stream per size, as disentanglement_lib draws every size's samples from one random state
            train, test = train_test_codes(represent, data, size, n_test, seed + i, batch_size, False, name)
            train_acc, test_acc, warned = factor_accuracies(make_model, *train, *test, bar=bar)
            unconverged += warned
            per_size[str(size)] = {"train_accuracy": dict(zip(data.factor_names, train_acc)),
                                   "test_accuracy": dict(zip(data.factor_names, test_acc))}
            out.update({f"{size}_test_accuracy": float(np.mean(test_acc)),
                        f"{size}_train_accuracy": float(np.mean(train_acc)),
                        f"{size}_min_test_accuracy": float(np.min(test_acc))})
    return {**out, "per_size": per_size, "unconverged_fits": unconverged}


def logistic_regression_cv():
    """disentanglement_lib utils.py's logistic_regression_cv, LogisticRegressionCV(Cs=10, cv=KFold(5)), as its
    scikit-learn (< 0.22) fit it: one-vs-rest (multi_class="ovr", removed in scikit-learn 1.7), each class's C chosen
    by its own 5-fold accuracy, lbfgs, L2. OneVsRestClassifier of the binary LogisticRegressionCV is that model;
    scoring is set to accuracy, the default a later scikit-learn changes."""
    from sklearn.linear_model import LogisticRegressionCV  # lazy: vae-train never pays for sklearn
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5), scoring="accuracy"))


def downstream_logreg(represent, data, n_train=10_000, n_test=5_000, seed=0, batch_size=2048, progress=False):
    """The downstream task with logistic regression (disentanglement_lib unsupervised_study_v1/metric_configs/
    downstream_task_logistic_regression.gin). Returns downstream()'s result. Invariant to a rotation of the code
    (the L2 penalty is), not to rescaling a dimension."""
    return downstream("downstream_logreg", logistic_regression_cv, represent, data, n_train, n_test, seed,
                      batch_size, progress, HEADLINE_SIZES)


METRIC = Metric(
    "downstream_logreg", downstream_logreg,
    # downstream_task_logistic_regression.gin: num_train=[10, 100, 1000, 10000], num_test=5000
    full={"n_train": 10_000, "n_test": 5_000},
    quick={"n_train": 100, "n_test": 1_000},
    headline=tuple(f"{size}_test_accuracy" for size in HEADLINE_SIZES),
)
