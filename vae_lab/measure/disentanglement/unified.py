"""disentanglement_lib's unified scores (unified_scores.py): three matrices relating code dimensions to factors (DCI's
tree importances, binned MI, SAP's one-dimension SVM accuracies), each aggregated as DCI, MIG, SAP and modularity
aggregate theirs, and the area under its precision curve."""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, check_factors, train_test_codes
from vae_lab.measure.disentanglement.dci import dci_codes, dci_scores
from vae_lab.measure.disentanglement.mig_dlib import entropy
from vae_lab.measure.disentanglement.modularity_ridgeway import modularity_per_code, mutual_info_matrix
from vae_lab.measure.disentanglement.sap import sap_codes
from vae_lab.progress import bar as progress_bar

MATRICES = ("gbt", "mi", "svm")  # importance_gbt_matrix, mutual_information_matrix, accuracy_svm_matrix
AGGREGATIONS = ("dci_disentanglement", "dci_completeness", "mig", "sap", "modularity", "area_precision",
                "max_precision")


def independent_groups(matrix, threshold):
    """disentanglement_lib visualize_scores.py's precision(matrix, threshold): the connected components with at least
    one edge of the bipartite graph of code dimensions and factors joined where matrix (D, K) >= threshold (and is
    not 0)."""
    m = np.asarray(matrix)
    edges = (m >= threshold) & (m != 0)
    parent = list(range(sum(m.shape)))  # union-find over D code nodes then K factor nodes

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for j, k in zip(*np.nonzero(edges)):
        parent[root(j)] = root(m.shape[0] + k)
    return len({root(j) for j, _ in zip(*np.nonzero(edges))})


def precision_curve(matrix):
    """disentanglement_lib unified_scores.py, pr_curves_values: independent_groups at every entry of the matrix
    taken as the threshold, largest first; (trapezoid area under it over the thresholds, its maximum)."""
    thresholds = np.sort(np.asarray(matrix, dtype=np.float64).ravel())[::-1]
    groups = np.array([independent_groups(matrix, t) for t in thresholds], dtype=np.float64)
    area = float(((groups[:-1] + groups[1:]) * (thresholds[:-1] - thresholds[1:]) / 2).sum())
    return area, int(groups.max())


def aggregate(matrix, factors):
    """unified_scores.py's aggregation_dci, _mig, _sap, _modularity and pr_curves_values of one matrix (D, K), the
    factors (N, K) giving MIG's entropies; a factor constant in the sample is left out of MIG (disentanglement_lib
    divides by zero)."""
    m = np.asarray(matrix, dtype=np.float64)
    disentanglement, completeness = dci_scores(m)
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(m.shape[1])
    h = np.array([entropy(column) for column in np.asarray(factors).T])
    area, most = precision_curve(m)
    return {"dci_disentanglement": disentanglement, "dci_completeness": completeness,
            "mig": float(((top[0] - second)[h > 0] / h[h > 0]).mean()) if (h > 0).any() else 0.0,
            "sap": float((top[0] - second).mean()), "modularity": float(modularity_per_code(m).mean()),
            "area_precision": area, "max_precision": most}


def unified_codes(train_codes, train_factors, test_codes, test_factors, n_estimators=100, seed=0):
    """Every aggregation of every matrix of given codes: {"gbt_mig": ..., ..., "matrices": {name: (D x K)}}."""
    matrices = {"gbt": np.array(dci_codes(train_codes, train_factors, test_codes, test_factors, n_estimators,
                                          seed)["importance"]),
                "mi": mutual_info_matrix(train_codes, train_factors),
                "svm": np.array(sap_codes(train_codes, train_factors, test_codes, test_factors, seed=seed)
                                ["score_matrix"])}
    out = {f"{name}_{key}": value for name, m in matrices.items() for key, value in aggregate(m, train_factors).items()}
    return {**out, "matrices": {name: m.tolist() for name, m in matrices.items()}}


def unified(represent, data, n_train=10_000, n_test=5_000, n_estimators=100, seed=0, batch_size=2048,
            progress=False):
    """disentanglement_lib unified_scores.py, compute_unified_scores with all three of its matrix functions
    (matrix_fns has no default) on n_train and n_test random points: the tree importances of `n_estimators` trees
    (DCI's), the MI of the training codes in 20 bins (MIG's), the accuracies of LinearSVC(C=0.01) on each dimension
    (SAP's, primal solver as in sap.py). Returns {"<matrix>_<aggregation>" for MATRICES x AGGREGATIONS,
    "matrices"}."""
    check_factors(data)
    train, test = train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "unified")
    with progress_bar(1, "unified: fit", "fit", enabled=progress) as bar:
        out = unified_codes(*train, *test, n_estimators=n_estimators, seed=seed)
        bar.update(1)
    return out


METRIC = Metric(
    "unified", unified,
    # no study config sets its sizes: those of dci.gin and sap_score.gin, whose matrices it computes
    full={"n_train": 10_000, "n_test": 5_000, "n_estimators": 100},
    quick={"n_train": 1_000, "n_test": 1_000, "n_estimators": 10},
    headline=tuple(f"{m}_{a}" for m in MATRICES for a in AGGREGATIONS if a != "max_precision"),
)
