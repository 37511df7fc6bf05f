"""disentanglement_lib's strong downstream task: boosted trees trained with one other factor held at one value,
tested with that factor at its other values (a covariate shift)."""
from functools import partial

import numpy as np
import torch

from vae_lab.measure.disentanglement.base import (
    Metric,
    check_factors,
    encode_factors,
    factor_accuracies,
    generators,
    sample_codes,
)
from vae_lab.measure.disentanglement.downstream_gbt import boosted_trees
from vae_lab.progress import bar as progress_bar


def intervene(train, test, target, sizes, g):
    """strong_downstream_task.py's intervene: a factor other than `target` drawn uniformly, held at a value drawn
    uniformly in the training factors and set to uniform draws of its other values in the test ones (copies)."""
    others = [j for j in range(len(sizes)) if j != target]
    j = others[int(torch.randint(len(others), (1,), generator=g))]
    value = int(torch.randint(sizes[j], (1,), generator=g))
    train, test = train.clone(), test.clone()
    train[:, j] = value
    shifted = torch.randint(sizes[j] - 1, (len(test),), generator=g)
    test[:, j] = shifted + (shifted >= value).long()  # the other values, uniformly
    return train, test, j, value


@torch.no_grad()
def downstream_strong(represent, data, n_train=10_000, n_test=5_000, n_experiments=10, n_estimators=100, seed=0,
                      batch_size=2048, progress=False):
    """disentanglement_lib evaluation/metrics/strong_downstream_task.py with boosted trees: the i.i.d. task's mean
    test accuracy ("test_accuracy"), and for each factor, `n_experiments` times, trees trained on the intervened
    training points to predict it, tested on the intervened test points ("intervened_test_accuracy", the mean);
    "generalization_gap" is 1 - intervened / i.i.d. Its interventions drew from numpy's global random state; ours
    from the seeded generator."""
    check_factors(data)
    sizes = data.factor_sizes
    g, image_g = generators(data, seed)
    make = partial(boosted_trees, n_estimators, seed)
    with progress_bar(len(sizes) * (n_experiments + 1), "downstream_strong: fit", "fit", enabled=progress) as bar:
        train = sample_codes(represent, data, n_train, g, image_g, batch_size)
        test = sample_codes(represent, data, n_test, g, image_g, batch_size)
        _, iid, unconverged = factor_accuracies(make, *train, *test, bar=bar)
        factors_train, factors_test = torch.as_tensor(train[1]), torch.as_tensor(test[1])
        shifted = []
        for i in range(len(sizes)):
            for _ in range(n_experiments):
                f_train, f_test, _, _ = intervene(factors_train, factors_test, i, sizes, g)
                codes = [encode_factors(represent, data, f, image_g, batch_size) for f in (f_train, f_test)]
                _, acc, warned = factor_accuracies(make, codes[0], f_train.numpy(), codes[1], f_test.numpy(),
                                                   factors=[i], bar=bar)
                shifted.append(acc[0])
                unconverged += warned
    iid_mean, shifted_mean = float(np.mean(iid)), float(np.mean(shifted))
    return {"test_accuracy": iid_mean, "intervened_test_accuracy": shifted_mean,
            "generalization_gap": 1 - shifted_mean / iid_mean if iid_mean > 0 else 0.0,
            "per_factor_test_accuracy": dict(zip(data.factor_names, iid)),
            "per_factor_intervened_test_accuracy": dict(zip(data.factor_names, np.reshape(shifted, (len(sizes), -1))
                                                            .mean(1).tolist())),
            "unconverged_fits": unconverged}


METRIC = Metric(
    "downstream_strong", downstream_strong,
    # no study config: downstream_task.gin's largest sample, the function's own n_experiment=10, boosted trees as
    # in config/tests (strong_downstream_task_test.py)
    full={"n_train": 10_000, "n_test": 5_000, "n_experiments": 10, "n_estimators": 100},
    quick={"n_train": 500, "n_test": 500, "n_experiments": 2, "n_estimators": 5},
    headline=("test_accuracy", "intervened_test_accuracy", "generalization_gap"),
)
