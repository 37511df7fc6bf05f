"""Modularity (Ridgeway & Mozer 2018) as disentanglement_lib computes it: from the binned mutual-information matrix.

Named for its authors: "modularity" also names other scores (e.g. the modularity term of Eastwood & Williams' DCI).
"""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, check_factors, one_sample
from vae_lab.measure.disentanglement.mig_dlib import BINS, discrete_mi, discretise


def mutual_info_matrix(codes, factors, bins=BINS):
    """(D, K) I(bin(z_j); v_k) in nats: each code dimension in `bins` equal-width bins (mig_dlib.discretise),
    against each factor's classes (disentanglement_lib utils.py, discrete_mutual_info)."""
    binned, factors = discretise(codes, bins), np.asarray(factors)
    return np.array([[discrete_mi(binned[:, j], factors[:, k]) for k in range(factors.shape[1])]
                     for j in range(binned.shape[1])]).reshape(binned.shape[1], factors.shape[1])


def modularity_per_code(mi):
    """Ridgeway & Mozer 2018, sec. 3, as disentanglement_lib's modularity_explicitness.py computes it: code j's
    deviation from an ideal one-factor code, delta_j = sum_{k != k*} m_jk^2 / ((K - 1) m_jk*^2) with k* its factor of
    largest MI m_jk*, and modularity 1 - delta_j; a code with no MI with any factor scores 0. mi (D, K) -> (D,)."""
    squared = np.square(np.asarray(mi, dtype=np.float64))
    top = squared.max(1)
    out = np.zeros(len(squared))
    used = top > 0
    out[used] = 1 - (squared[used].sum(1) - top[used]) / (top[used] * (squared.shape[1] - 1))
    return out


def modularity_codes(codes, factors, bins=BINS):
    """Modularity of given codes (N, D) and factor classes (N, K): the mean over code dimensions of
    modularity_per_code of the binned MI matrix. Returns {"score", "per_code", "mutual_info" (D x K)}."""
    mi = mutual_info_matrix(codes, factors, bins)
    per_code = modularity_per_code(mi)
    return {"score": float(per_code.mean()), "per_code": per_code.tolist(), "mutual_info": mi.tolist()}


def modularity_ridgeway(represent, data, n=10_000, bins=BINS, seed=0, batch_size=2048, progress=False):
    """Ridgeway & Mozer's modularity as disentanglement_lib computes it (evaluation/metrics/modularity_explicitness.py):
    the MI of n random points' codes, `bins` bins per dimension (its training sample: the test one serves only
    explicitness, here explicitness_ridgeway). Returns {"score", "per_code", "mutual_info" (D x K)}."""
    check_factors(data)
    codes, factors = one_sample(represent, data, n, seed, batch_size, progress, "modularity_ridgeway")
    return modularity_codes(codes, factors, bins)


METRIC = Metric(
    "modularity_ridgeway", modularity_ridgeway,
    # disentanglement_lib unsupervised_study_v1/metric_configs/modularity_explicitness.gin: num_train, 20 bins
    full={"n": 10_000},
    quick={"n": 10_000},  # already cheap: the same sample as the full protocol
    headline=("score",),
)
