"""Explicitness (Ridgeway & Mozer 2018) as disentanglement_lib computes it: the ROC AUC of a one-vs-rest logistic
regression predicting each factor from the standardised code.

Named for its authors: "explicitness" also names other scores (e.g. the E of Eastwood & Williams' DCI-ES).
"""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, fit_counted, train_test_codes
from vae_lab.progress import bar as progress_bar


def standardise(train, test):
    """Both samples (N, D) less the training mean, over the training standard deviation (disentanglement_lib utils.py,
    normalize_data); a dimension constant in the training sample is only centred (disentanglement_lib divides by
    0 and its classifier fails on the NaNs)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def one_vs_rest_logistic(seed=0):
    """disentanglement_lib's LogisticRegression() as its scikit-learn (< 0.22) fit it: liblinear, one binary
    classifier per class (multi_class="ovr", an option scikit-learn 1.7 removed), C = 1; probabilities each
    classifier's sigmoid, normalised over the classes. OneVsRestClassifier of the binary liblinear fit is that model."""
    from sklearn.linear_model import LogisticRegression  # lazy: vae-train never pays for sklearn
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))


def macro_auc(classes, labels, probabilities):
    """Mean over classes of the one-vs-rest ROC AUC of `probabilities` (N, len(classes)) for `labels` (N,): sklearn's
    roc_auc_score of the one-hot labels (disentanglement_lib: MultiLabelBinarizer), over the classes that occur in
    `labels` but not in all of them (disentanglement_lib fails where a class is missing from either sample)."""
    from sklearn.metrics import roc_auc_score

    onehot = np.asarray(labels)[:, None] == np.asarray(classes)[None, :]
    kept = onehot.any(0) & ~onehot.all(0)
    return float(roc_auc_score(onehot[:, kept], probabilities[:, kept], average="macro")) if kept.any() else 0.5


def explicitness_codes(train_codes, train_factors, test_codes, test_factors, names=None, seed=0, bar=None):
    """Explicitness of given codes: per factor, the macro ROC AUC of one_vs_rest_logistic fit on the standardised
    training codes, on the training and the test points; the score is its mean over factors on the test points.
    Invariant to an invertible affine map of each dimension (standardised away) and to a rotation of standardised
    dimensions of equal spread (the L2 penalty is rotation-invariant)."""
    x_train, x_test = standardise(as_numpy(train_codes), as_numpy(test_codes))
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    names = list(names or [f"factor{k}" for k in range(y_train.shape[1])])
    train, test, unconverged = [], [], 0
    for k in range(y_train.shape[1]):
        model, warned = fit_counted(one_vs_rest_logistic(seed), x_train, y_train[:, k])
        train.append(macro_auc(model.classes_, y_train[:, k], model.predict_proba(x_train)))
        test.append(macro_auc(model.classes_, y_test[:, k], model.predict_proba(x_test)))
        unconverged += warned
        if bar is not None:
            bar.update(1)
    return {"score": float(np.mean(test)), "score_train": float(np.mean(train)), "per_factor": dict(zip(names, test)),
            "unconverged_fits": unconverged}


def explicitness_ridgeway(represent, data, n_train=10_000, n_test=5_000, seed=0, batch_size=2048, progress=False):
    """Ridgeway & Mozer's explicitness as disentanglement_lib computes it (evaluation/metrics/
    modularity_explicitness.py, explicitness_per_factor). Returns {"score" (test AUC), "score_train", "per_factor",
    "unconverged_fits"}."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "explicitness")
    with progress_bar(len(data.factor_sizes), "explicitness: fit", "fit", enabled=progress) as bar:
        return explicitness_codes(*train, *test, names=data.factor_names, seed=seed, bar=bar)


METRIC = Metric(
    "explicitness_ridgeway", explicitness_ridgeway,
    # disentanglement_lib unsupervised_study_v1/metric_configs/modularity_explicitness.gin
    full={"n_train": 10_000, "n_test": 5_000},
    quick={"n_train": 2_000, "n_test": 1_000},
    headline=("score",),
)
