"""disentanglement_lib's unsupervised scores of a code: no factors needed (evaluation/metrics/unsupervised_metrics.py).

Of the covariance Σ (D x D) of the codes of n images: the total correlation and the Wasserstein correlation of the
Gaussian N(0, Σ) against the product of its marginals N(0, diag Σ); of the codes binned as MIG bins them (20
equal-width bins per dimension), the mean mutual information between two different dimensions. All three are 0 for
independent dimensions and grow as dimensions share information; they say how factorised a code is, not whether
it matches any factor.
"""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, data_codes
from vae_lab.measure.disentanglement.mig_dlib import BINS, discrete_mi, discretise


def gaussian_total_correlation(cov):
    """KL(N(0, Σ) || N(0, diag Σ)) = ½ (Σ_j log Σ_jj - log det Σ) in nats: -½ log det of the correlation matrix."""
    cov = np.asarray(cov, dtype=np.float64)
    return float(0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov):
    """The squared 2-Wasserstein distance between N(0, Σ) and N(0, diag Σ): tr Σ + tr diag Σ - 2 tr (D½ Σ D½)½ with
    D = diag Σ (Dowson & Landau 1982). disentanglement_lib takes tr sqrtm(D Σ), the same trace (D Σ is similar to
    D½ Σ D½); here from the eigenvalues of the symmetric D½ Σ D½."""
    cov = np.asarray(cov, dtype=np.float64)
    root = np.sqrt(np.diag(cov))
    eig = np.linalg.eigvalsh(root[:, None] * cov * root[None, :])
    return float(2 * np.trace(cov) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def mutual_info_score(codes, bins=BINS):
    """Mean over ordered pairs of different dimensions of I(z_i; z_j) in nats, each dimension binned into `bins`
    equal-width bins (disentanglement_lib's histogram discretiser, as mig_dlib). 0 for a code of one dimension."""
    binned = discretise(codes, bins)
    d = binned.shape[1]
    if d < 2:
        return 0.0
    total = sum(discrete_mi(binned[:, i], binned[:, j]) for i in range(d) for j in range(i + 1, d))
    return float(2 * total / (d * d - d))  # the matrix is symmetric: each pair counted twice, as the reference does


def unsupervised_codes(codes, bins=BINS):
    """The four scores of codes (n, D). Dimensions constant over the sample (variance 0, where Σ is singular and
    disentanglement_lib's log gives inf) are left out and counted: a constant is independent of every other
    dimension."""
    codes = as_numpy(codes)
    varying = codes.var(0) > 0
    kept = codes[:, varying]
    cov = np.cov(kept, rowvar=False).reshape(kept.shape[1], kept.shape[1])  # (D', D'), ddof=1 as np.cov(mus)
    trace = float(np.trace(cov))
    wasserstein = gaussian_wasserstein_correlation(cov) if len(cov) else 0.0
    return {"gaussian_total_correlation": gaussian_total_correlation(cov) if len(cov) else 0.0,
            "gaussian_wasserstein_correlation": wasserstein,
            "gaussian_wasserstein_correlation_norm": wasserstein / trace if trace > 0 else 0.0,
            "mutual_info_score": mutual_info_score(kept, bins) if len(cov) else 0.0,
            "constant_dims": int((~varying).sum())}


def unsupervised(represent, data, n=10_000, bins=BINS, seed=0, batch_size=2048, progress=False):
    """disentanglement_lib's unsupervised_metrics: the codes of n images (drawn over the factor grid where there
    are factors, else the test split's), their covariance's Gaussian total and Wasserstein correlations and the
    binned code's mean pairwise MI. Returns {"gaussian_total_correlation", "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm", "mutual_info_score", "constant_dims", "n"}."""
    codes = data_codes(represent, data, n, seed, batch_size, progress, "unsupervised")
    return {**unsupervised_codes(codes, bins), "n": len(codes)}


METRIC = Metric(
    "unsupervised", unsupervised,
    full={"n": 10_000},  # disentanglement_lib unsupervised_study_v1/metric_configs/unsupervised.gin: num_train
    quick={"n": 10_000},  # already cheap: one covariance and D(D-1)/2 histograms
    headline=("gaussian_total_correlation", "gaussian_wasserstein_correlation",
              "gaussian_wasserstein_correlation_norm", "mutual_info_score"),
    needs_factors=False, prefixed=False,
)
