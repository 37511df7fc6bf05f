"""The mutual information gap (Chen et al. 2018) as disentanglement_lib computes it: binned posterior means."""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, generators, sample_codes
from vae_lab.progress import bar as progress_bar

BINS = 20  # histogram bins per code dimension (disentanglement_lib, unsupervised_study_v1/metric_configs/mig.gin)


def discretise(codes, bins=BINS):
    """(N, D) codes -> (N, D) bin indices 0..bins-1: `bins` equal-width bins between each column's min and max, with
    np.histogram's edges and the maximum in the last bin (disentanglement_lib utils.py, _histogram_discretize)."""
    codes = as_numpy(codes)
    out = np.empty(codes.shape, dtype=np.int64)
    for j, column in enumerate(codes.T):
        out[:, j] = np.digitize(column, np.histogram_bin_edges(column, bins)[:-1]) - 1
    return out


def discrete_mi(a, b):
    """I(a; b) in nats of two (N,) integer sequences, from their joint histogram (sklearn's mutual_info_score)."""
    a, b = np.unique(np.asarray(a), return_inverse=True)[1], np.unique(np.asarray(b), return_inverse=True)[1]
    na, nb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / len(a)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def entropy(a):
    """H(a) in nats of an (N,) integer sequence, from its histogram."""
    p = np.unique(np.asarray(a), return_counts=True)[1] / len(a)
    return float(-(p * np.log(p)).sum())


def mig_dlib_codes(codes, factors, names=None, bins=BINS):
    """Chen et al. 2018, eq. 6, as disentanglement_lib's mig.py computes it: mean over factors v_k of
    (I(z_a; v_k) - I(z_b; v_k)) / H(v_k), z_a and z_b the two code dimensions, each binned by `discretise`, sharing
    most information with v_k; entropies and MI of the sample's histograms. codes (N, D) (posterior means), factors
    (N, K) classes. A factor constant in the sample (H = 0, where disentanglement_lib divides by zero) is left out.

    Returns (score, {factor name: gap}).
    """
    binned, factors = discretise(codes, bins), np.asarray(as_numpy(factors), dtype=np.int64)
    names = list(names or [f"factor{k}" for k in range(factors.shape[1])])
    gaps = {}
    for k, name in enumerate(names):
        h = entropy(factors[:, k])
        if h <= 0:
            continue
        mi = sorted((discrete_mi(binned[:, j], factors[:, k]) for j in range(binned.shape[1])), reverse=True)
        gaps[name] = (mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / h
    return (sum(gaps.values()) / len(gaps) if gaps else 0.0), gaps


def mig_dlib(represent, data, n=10_000, bins=BINS, seed=0, batch_size=2048, progress=False):
    """MIG as disentanglement_lib computes it (Locatello et al. 2019; evaluation/metrics/mig.py): posterior means of
    n images with factors drawn uniformly, `bins` bins per dimension, every factor. Returns {"score", "per_factor"}."""
    check_factors(data)
    with progress_bar(n, "mig_dlib: encode", "img", enabled=progress, unit_scale=True) as bar:
        codes, factors = sample_codes(represent, data, n, *generators(data, seed), batch_size, bar)
    score, gaps = mig_dlib_codes(codes, factors, data.factor_names, bins)
    return {"score": score, "per_factor": gaps}


METRIC = Metric(
    "mig_dlib", mig_dlib,
    full={"n": 10_000},  # disentanglement_lib unsupervised_study_v1/metric_configs/mig.gin
    quick={"n": 10_000},  # already cheap: the same sample as the full protocol
    headline=("score",),
)
