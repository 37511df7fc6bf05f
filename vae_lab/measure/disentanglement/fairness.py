"""Unfairness (Locatello et al. 2019, "On the Fairness of Disentangled Representations", sec. 4) as
disentanglement_lib computes it: how much a classifier's predictions of one factor move when another is intervened on.
"""
import numpy as np
import torch

from vae_lab.measure.disentanglement.base import (
    Metric,
    check_factors,
    encode_factors,
    fit_counted,
    generators,
    sample_codes,
)
from vae_lab.measure.disentanglement.downstream_gbt import boosted_trees
from vae_lab.progress import bar as progress_bar


def inter_group_fairness(counts):
    """counts (predicted classes, sensitive classes) -> (mean, max) total variation distance between the predictions
    given each sensitive class and the predictions overall, the mean weighted by each class's count
    (disentanglement_lib fairness.py, inter_group_fairness)."""
    counts = np.asarray(counts, dtype=np.float64)
    overall = counts.sum(1) / counts.sum()
    per_class = counts.sum(0)
    tv = np.abs(counts / per_class - overall[:, None]).sum(0) / 2
    return float((tv * per_class).sum() / per_class.sum()), float(tv.max())


def aggregates(matrix):
    """The eight reductions disentanglement_lib's compute_scores_dict reports of a (K, K) matrix [target, sensitive]
    (its diagonal left out), named as there: mean_sens:mean_pred is the mean over sensitive factors of the mean over
    targets, mean_pred:mean_sens the other order, and so on with max."""
    m = np.asarray(matrix, dtype=np.float64)
    off = ~np.eye(len(m), dtype=bool)
    rows = [m[i, off[i]] for i in range(len(m))]  # per target, over sensitive factors
    cols = [m[off[:, j], j] for j in range(len(m))]  # per sensitive factor, over targets
    out = {}
    for outer, groups in (("sens", cols), ("pred", rows)):
        inner = "pred" if outer == "sens" else "sens"
        for how_in, f_in in (("mean", np.mean), ("max", np.max)):
            reduced = [f_in(g) for g in groups]
            for how_out, f_out in (("mean", np.mean), ("max", np.max)):
                out[f"{how_out}_{outer}:{how_in}_{inner}"] = float(f_out(reduced))
    return out


@torch.no_grad()
def fairness(represent, data, n_train=10_000, n_per_class=100, n_estimators=100, seed=0, batch_size=2048,
             progress=False):
    """disentanglement_lib fairness.py, compute_fairness: boosted trees (disentanglement_lib's
    gradient_boosting_classifier, `n_estimators`) predict each target factor i from n_train random points' codes;
    for each sensitive factor j != i, n_per_class points are drawn once and encoded with j set to each of its values,
    and inter_group_fairness of the predictions' counts gives the pair's mean and max unfairness. 0 is fair.

    Returns {"mean" (the paper's score, mean_fairness:mean_pred:mean_sens), "max" (max_fairness:max_pred:max_sens),
    "mean_fairness", "max_fairness" (K x K, [target, sensitive]), "scores" (every reduction under
    disentanglement_lib's name), "unconverged_fits"}.
    """
    check_factors(data)
    sizes = data.factor_sizes
    g, image_g = generators(data, seed)
    with progress_bar(n_train, "fairness: encode", "img", enabled=progress, unit_scale=True) as bar:
        codes, factors = sample_codes(represent, data, n_train, g, image_g, batch_size, bar)
    mean_tv, max_tv = np.zeros((len(sizes), len(sizes))), np.zeros((len(sizes), len(sizes)))
    unconverged = 0
    with progress_bar(len(sizes) ** 2 - len(sizes), "fairness: intervene", "pair", enabled=progress) as bar:
        for i, size_i in enumerate(sizes):
            model, warned = fit_counted(boosted_trees(n_estimators, seed), codes, factors[:, i])
            unconverged += warned
            for j, size_j in enumerate(sizes):
                if i == j:
                    continue
                original = data.sample_factors(n_per_class, g)
                counts = np.zeros((size_i, size_j), dtype=np.int64)
                for c in range(size_j):
                    intervened = original.clone()
                    intervened[:, j] = c
                    predicted = model.predict(encode_factors(represent, data, intervened, image_g, batch_size))
                    counts[:, c] = np.bincount(predicted.astype(np.int64), minlength=size_i)
                mean_tv[i, j], max_tv[i, j] = inter_group_fairness(counts)
                bar.update(1)
    scores = {**{f"mean_fairness:{k}": v for k, v in aggregates(mean_tv).items()},
              **{f"max_fairness:{k}": v for k, v in aggregates(max_tv).items()}}
    return {"mean": scores["mean_fairness:mean_pred:mean_sens"], "max": scores["max_fairness:max_pred:max_sens"],
            "mean_fairness": mean_tv.tolist(), "max_fairness": max_tv.tolist(), "scores": scores,
            "unconverged_fits": unconverged}


METRIC = Metric(
    "fairness", fairness,
    # disentanglement_lib fairness_study_v1/metric_configs/fairness.gin; 100 trees, sklearn's default
    full={"n_train": 10_000, "n_per_class": 100, "n_estimators": 100},
    quick={"n_train": 1_000, "n_per_class": 20, "n_estimators": 10},
    headline=("mean", "max"),
)
