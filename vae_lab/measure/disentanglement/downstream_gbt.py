"""Downstream accuracy with gradient-boosted trees, as disentanglement_lib's downstream task computes it: how well
boosted trees predict each factor from the code, trained on 10, 100, 1,000 and 10,000 points."""
from functools import partial

from vae_lab.measure.disentanglement.base import Metric
from vae_lab.measure.disentanglement.downstream_logreg import downstream

HEADLINE_SIZES = (10, 100, 1_000)  # training sizes of the headlines, in the quick sizes and the full ones


def boosted_trees(n_estimators=100, seed=0):
    """disentanglement_lib utils.py's gradient_boosting_classifier: scikit-learn's defaults (100 trees) but
    `n_estimators`, seeded."""
    from sklearn.ensemble import GradientBoostingClassifier  # lazy: vae-train never pays for sklearn

    return GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)


def downstream_gbt(represent, data, n_train=10_000, n_test=5_000, n_estimators=100, seed=0, batch_size=2048,
                   progress=False):
    """The downstream task with boosted trees (disentanglement_lib unsupervised_study_v1/metric_configs/
    downstream_task_boosted_trees.gin). Returns downstream_logreg.downstream()'s result. Trees split one dimension
    at a time: invariant to a monotone map of each dimension, not to a rotation."""
    return downstream("downstream_gbt", partial(boosted_trees, n_estimators, seed), represent, data, n_train, n_test,
                      seed, batch_size, progress, HEADLINE_SIZES)


METRIC = Metric(
    "downstream_gbt", downstream_gbt,
    # downstream_task_boosted_trees.gin: num_train=[10, 100, 1000, 10000], num_test=5000; 100 trees, sklearn's default
    full={"n_train": 10_000, "n_test": 5_000, "n_estimators": 100},
    quick={"n_train": 1_000, "n_test": 1_000, "n_estimators": 10},
    headline=tuple(f"{size}_test_accuracy" for size in HEADLINE_SIZES),
)
