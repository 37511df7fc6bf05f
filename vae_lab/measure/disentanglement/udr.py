"""UDR, unsupervised disentanglement ranking (Duan et al. 2020), as disentanglement_lib computes it
(evaluation/udr/metrics/udr.py, compute_udr_sklearn with its lasso correlation; config/tests/methods/udr/udr.gin).

It needs no factors but a set of models trained on the same data (other seeds of one setting): a model whose
dimensions each match one dimension of every other model's code, up to sign and scale, scores high. For each ordered
pair (i, j) of models, on the posterior means of the same n images: every code standardised, its dimensions with
mean KL(q(z_d|x) || N(0, 1)) at most 0.01 zeroed; a Lasso (alpha 0.1) regression from code i to code j, |its
coefficients| as the similarity R (D_i x D_j); R restricted to the informative dimensions of both; its relative
strength, the mean over rows and over columns of max² / sum, averaged. A model's UDR is the median of the scores of
the pairs (j, i), j != i.
"""
import numpy as np
import torch

from vae_lab.measure.disentanglement.base import Metric, data_codes

KL_THRESHOLD = 0.01  # nats: dimensions with less mean KL are uninformative (udr.gin's kl_filter_threshold)
ALPHA = 0.1  # the Lasso's penalty (disentanglement_lib's lasso_correlation_matrix)


def relative_strength(r):
    """disentanglement_lib's relative_strength_disentanglement of a similarity matrix R (D_i x D_j): the means, over
    columns and over rows, of max² / sum (0 where a row or column is all zero), averaged; 0 for an empty matrix."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    if r.size == 0:
        return 0.0

    def strength(axis):
        total = r.sum(axis)
        return np.divide(r.max(axis) ** 2, total, out=np.zeros_like(total), where=total > 0).mean()

    return float((strength(0) + strength(1)) / 2)


def gaussian_kl(mean, log_var):
    """Mean over images of KL(N(mean, exp(log_var)) || N(0, 1)) per dimension (D,), as disentanglement_lib's UDR
    reads it from every model's encoder whatever its prior."""
    return (0.5 * (mean**2 + np.exp(log_var) - log_var - 1)).mean(0)


def udr_codes(means, kls, seed=0, alpha=ALPHA, threshold=KL_THRESHOLD):
    """UDR of models given the posterior means (n, D_i) of the same images and mean KL per dimension (D_i,) of each.
    Returns {"scores": [model's UDR], "pairwise": [[score of (i, j)]] (0 on the diagonal), "informative_dims"}."""
    from sklearn.linear_model import Lasso  # lazy: vae-train never pays for sklearn

    reps, masks = [], []
    for mean, kl in zip(means, kls):
        mean, kl = np.asarray(mean, np.float64), np.asarray(kl, np.float64)
        std = mean.std(0)
        rep = (mean - mean.mean(0)) / np.where(std > 0, std, 1)  # sklearn's StandardScaler
        reps.append(rep * (kl > KL_THRESHOLD))  # disentanglement_lib zeroes at 0.01 whatever the threshold
        masks.append(kl > threshold)
    m = len(reps)
    pairwise = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                r = np.abs(Lasso(alpha=alpha, random_state=seed).fit(reps[i], reps[j]).coef_).T  # (D_i, D_j)
                pairwise[i, j] = relative_strength(r[masks[i]][:, masks[j]])
    scores = [float(np.median(np.delete(pairwise[:, i], i))) for i in range(m)]
    return {"scores": scores, "pairwise": pairwise.tolist(), "informative_dims": [int(k.sum()) for k in masks]}


def udr(encodes, data, n=1_000, seed=0, batch_size=2048, progress=False):
    """UDR of the models whose encoders are `encodes` (each images -> (mean, log_var)), all on the same n images:
    drawn over the factor grid where the data has factors (disentanglement_lib's sample_observations), else the
    test split's (base.data_codes, seeded: the same images for every model). Returns udr_codes' dict and "n"."""
    means, kls = [], []
    for k, encode in enumerate(encodes):
        def both(images, encode=encode):
            mean, log_var = encode(images)
            return torch.cat([torch.as_tensor(mean), torch.as_tensor(log_var)], 1)

        codes = data_codes(both, data, n, seed, batch_size, progress, f"udr: model {k + 1}/{len(encodes)}")
        half = codes.shape[1] // 2
        means.append(codes[:, :half])
        kls.append(gaussian_kl(codes[:, :half], codes[:, half:]))
    return {**udr_codes(means, kls, seed), "n": len(means[0])}


METRIC = Metric(
    "udr", udr,
    full={"n": 1_000},  # disentanglement_lib config/tests/methods/udr/udr.gin: num_data_points
    quick={"n": 1_000},  # already cheap: m(m-1) Lasso fits on n points
    headline=("score",),
    needs_factors=False, needs_runs=True,
)
