"""disentanglement_lib's reduced downstream task: how well boosted trees still predict a factor once the code
dimensions most important to it are removed, and how well they predict the others from what is left."""
from functools import partial

import numpy as np

from vae_lab.measure.disentanglement.base import (
    Metric,
    check_factors,
    factor_accuracies,
    fit_counted,
    train_test_codes,
)
from vae_lab.measure.disentanglement.downstream_gbt import boosted_trees
from vae_lab.progress import bar as progress_bar


def reduced_codes(train_codes, train_factors, test_codes, test_factors, n_remove=1, n_estimators=100, seed=0,
                  names=None):
    """disentanglement_lib reduced_downstream_task.py with factorwise_dci: for each factor k, `n_remove` times, the
    dimension of largest tree importance for k (compute_importance_gbt's column k: the trees fit to predict k, on
    the dimensions left) is removed; boosted trees then predict every factor from the rest. "factor_test_accuracy"
    is k's own accuracy, mean over k (mean_test_accuracy_reduced_factor), "others_test_accuracy" the others', mean
    over k of their mean (mean_test_accuracy_other_factors)."""
    x_train, x_test = np.asarray(train_codes), np.asarray(test_codes)
    y_train = np.asarray(train_factors)
    names = list(names or [f"factor{k}" for k in range(y_train.shape[1])])
    make = partial(boosted_trees, n_estimators, seed)
    own, others, removed, per_factor, unconverged = [], [], {}, {}, 0
    for k, name in enumerate(names):
        kept = list(range(x_train.shape[1]))
        for _ in range(min(n_remove, len(kept) - 1)):
            model, warned = fit_counted(make(), x_train[:, kept], y_train[:, k])
            unconverged += warned
            kept.pop(int(np.argmax(model.feature_importances_)))
        _, test, warned = factor_accuracies(make, x_train[:, kept], train_factors, x_test[:, kept], test_factors)
        unconverged += warned
        own.append(test[k])
        others.append(float(np.mean([a for i, a in enumerate(test) if i != k])))
        removed[name] = sorted(set(range(x_train.shape[1])) - set(kept))
        per_factor[name] = dict(zip(names, test))
    return {"factor_test_accuracy": float(np.mean(own)), "others_test_accuracy": float(np.mean(others)),
            "removed": removed, "test_accuracy": per_factor, "unconverged_fits": unconverged}


def downstream_reduced(represent, data, n_train=10_000, n_test=5_000, n_remove=1, n_estimators=100, seed=0,
                       batch_size=2048, progress=False):
    """The reduced downstream task (disentanglement_lib evaluation/metrics/reduced_downstream_task.py) on n_train and
    n_test random points. Returns reduced_codes's result."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "downstream_reduced")
    with progress_bar(1, "downstream_reduced: fit", "fit", enabled=progress) as bar:
        out = reduced_codes(*train, *test, n_remove=n_remove, n_estimators=n_estimators, seed=seed,
                            names=data.factor_names)
        bar.update(1)
    return out


METRIC = Metric(
    "downstream_reduced", downstream_reduced,
    # no study config: config/tests/.../reduced_downstream_task.gin's choices (one dimension removed, factorwise_dci,
    # boosted trees) on downstream_task.gin's largest sample
    full={"n_train": 10_000, "n_test": 5_000, "n_remove": 1, "n_estimators": 100},
    quick={"n_train": 500, "n_test": 500, "n_remove": 1, "n_estimators": 5},
    headline=("factor_test_accuracy", "others_test_accuracy"),
)
