"""Mutual information gap (Chen et al. 2018) of a code against discrete ground-truth factors."""
import torch

BINS = 20  # histogram bins per code dimension, as in disentanglement_lib (Locatello et al. 2019)


def discretise(codes, bins=BINS):
    """(N, D) codes -> (N, D) integer bins, equal-width between each dimension's min and max."""
    lo, hi = codes.min(0).values, codes.max(0).values
    width = (hi - lo).clamp_min(1e-12)
    return ((codes - lo) / width * bins).floor().clamp(0, bins - 1).long()


def discrete_mi(a, b):
    """I(a; b) in nats of two (N,) integer sequences, from their joint histogram."""
    a, b = torch.unique(a, return_inverse=True)[1], torch.unique(b, return_inverse=True)[1]
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount(a * nb + b, minlength=na * nb).double().view(na, nb) / len(a)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / outer[nz]).log()).sum())


def entropy(a):
    p = torch.unique(a, return_counts=True)[1].double() / len(a)
    return float(-(p * p.log()).sum())


def mig(codes, factors, names=None, bins=BINS):
    """Chen et al. 2018, eq. 6: mean over factors v_k of (I(z_a; v_k) - I(z_b; v_k)) / H(v_k), where z_a, z_b are
    the two code dimensions sharing most information with v_k. codes (N, D), here posterior means, binned into
    `bins`; factors (N, K) integer classes, used as given. Factors constant in the sample are left out.

    Returns (score, {factor name: gap}).
    """
    codes, factors = discretise(codes.detach().double().cpu(), bins), factors.cpu().long()
    names = names or [f"factor{k}" for k in range(factors.shape[1])]
    gaps = {}
    for k, name in enumerate(names):
        h = entropy(factors[:, k])
        if h <= 0:
            continue
        mi = sorted((discrete_mi(codes[:, j], factors[:, k]) for j in range(codes.shape[1])), reverse=True)
        gaps[name] = (mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / h
    return (sum(gaps.values()) / len(gaps) if gaps else 0.0), gaps
