"""The interventional robustness score (Suter et al. 2019) as disentanglement_lib computes it."""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, one_sample
from vae_lab.measure.disentanglement.mig_dlib import BINS, discretise

QUANTILE = 0.99  # disentanglement_lib irs.py's diff_quantile; 1.0 is the paper's maximum


def irs_codes(codes, factors, bins=BINS, quantile=QUANTILE):
    """Suter et al. 2019, sec. 4 (disentanglement_lib irs.py, scalable_disentanglement_score), of codes (N, D) and
    factor classes (N, K), the factors binned as codes are (mig_dlib.discretise, `bins` bins: a factor of more values
    shares bins). Constant dimensions are dropped. For dimension j and factor k, the mean over k's values v of the
    `quantile` of |z_j - E[z_j | v_k = v]| over the points with v_k = v, over z_j's largest |z_j - E z_j|, is how much
    z_j moves when k is held fixed; IRS_jk is 1 minus it, dimension j's score its largest IRS_jk, and the score the
    mean of those weighted by the largest deviations. No dimension varies: 0.

    Returns {"score", "num_active_dims", "per_dim" (the active dimensions' scores), "parents" (the factor of each),
    "irs_matrix" (active dims x K)}.
    """
    codes = as_numpy(codes)
    active = codes[:, codes.var(0) > 0]
    if not active.shape[1]:
        return {"score": 0.0, "num_active_dims": 0, "per_dim": [], "parents": [], "irs_matrix": []}
    binned = discretise(factors, bins)
    spread = np.abs(active - active.mean(0)).max(0)  # (D',) the normaliser
    moved = np.zeros((active.shape[1], binned.shape[1]))
    for k, column in enumerate(binned.T):
        values = np.unique(column)
        for v in values:
            group = active[column == v]
            moved[:, k] += np.percentile(np.abs(group - group.mean(0)), 100 * quantile, axis=0)
        moved[:, k] /= len(values)
    irs = 1 - moved / spread[:, None]
    per_dim = irs.max(1)
    return {"score": float(np.average(per_dim, weights=spread)), "num_active_dims": int(active.shape[1]),
            "per_dim": per_dim.tolist(), "parents": irs.argmax(1).tolist(), "irs_matrix": irs.tolist()}


def irs(represent, data, n=10_000, bins=BINS, seed=0, batch_size=2048, progress=False):
    """IRS as disentanglement_lib computes it (evaluation/metrics/irs.py) on n random points' codes. Returns
    irs_codes's result."""
    check_factors(data)
    codes, factors = one_sample(represent, data, n, seed, batch_size, progress, "irs")
    return irs_codes(codes, factors, bins)


METRIC = Metric(
    "irs", irs,
    # disentanglement_lib config/sample/irs/irs.gin (the study has none): num_train 10,000, 20 histogram bins
    full={"n": 10_000},
    quick={"n": 10_000},  # already cheap: the same sample as the full protocol
    headline=("score",),
)
