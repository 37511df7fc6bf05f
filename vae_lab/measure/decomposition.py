"""The KL term decomposed: index-code mutual information, total correlation and dimension-wise KL.

Hoffman & Johnson 2016; Chen et al. 2018 ("Isolating Sources of Disentanglement in VAEs"), eq. 2. With n the image
index, q(z) = 1/N sum_n q(z|n) the aggregate posterior and a factorised prior p(z) = prod_j p(z_j):

    E_n[KL(q(z|n) || p(z))] = I_q(z; n) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j))
                              index-code MI    total correlation (TC)     dimension-wise KL (dim-KL)

Every term is E_q(z,n)[log a(z) - log b(z)] for densities a, b among q(z|n), q(z), prod_j q(z_j), p(z), so one
sample z_i ~ q(z|n_i) per image and an estimate of log q(z_i) and of each log q(z_ij) give all three; the three
always sum to the single-sample KL estimate log q(z_i|n_i) - log p(z_i), whatever the estimator of log q.

`decompose` evaluates them over all N images given: the figure to report, with its N. The minibatch estimates the
β-TCVAE objective trains on are in vae_lab.penalties (`minibatch_terms`); docs/decomposition.md compares them.
"""
import math

import torch

from vae_lab.priors import normal_log_prob, standard_normal_log_prob
from vae_lab.progress import over

BLOCK_ELEMENTS = 2**24  # elements of one (chunk, N, D) float64 block in `decompose`: 128 MiB, a few alive at once
NOT_FACTORISED_NOTE = ("dimwise_kl is not defined: the prior is not factorised (p(z) != prod_j p(z_j)), so "
                       "sum_j KL(q(z_j) || p(z_j)) is not a term of the KL; index_code_mi and total_correlation do not "
                       "involve the prior and are reported")


@torch.no_grad()
def decompose(mean, log_var, generator=None, log_prob_per_dim=standard_normal_log_prob, chunk=1024, z=None,
              progress=False):
    """MI, TC and dim-KL (nats per image) of the N posteriors N(mean_n, exp(log_var_n)) given, (N, D) each.

    One z_i ~ q(z|n_i) per image (or `z`, (N, D), if given); log q(z_i) = logsumexp_n log q(z_i|n) - log N over all N
    posteriors and log q(z_ij) = logsumexp_n log q(z_ij|n) - log N per dimension, in float64 and in blocks of rows
    (chunk · N · D below BLOCK_ELEMENTS; the cost is O(N² D)). log q(z_i|n_i) is evaluated at the same z as the rest,
    not as the analytic entropy (He et al. 2019, `calc_mi`): same expectation, far less variance, and exactly 0 for
    MI and TC when every posterior is the same. As log q(z_i) >= log q(z_i|n_i) - log N for every i, this MI estimate
    is at most log N, as I_q(z; n) <= H(n) = log N is (Hoffman & Johnson 2016): MI over different N is not
    comparable, hence `n` in the result. TC depends on N too: the aggregate of N posteriors is a mixture of N bumps,
    never exactly a product, even when the means are drawn independently per dimension.

    log_prob_per_dim(z) -> (B, D) is a factorised prior's log p(z_j) per dimension (Prior.log_prob_per_dim). With
    None (a prior that does not factorise: mixtures, VampPrior) dimwise_kl, its per-dimension list and kl are None
    and `note` says why; otherwise `note` is None.
    Returns {"index_code_mi", "total_correlation", "dimwise_kl", "dimwise_kl_per_dim" (list of D), "kl" (the
    single-sample estimate of E_n KL(q(z|n) || p(z)) the three sum to), "n", "note"}.
    """
    mean, log_var = mean.double(), log_var.double()
    n, d = mean.shape
    if n < 1 or log_var.shape != mean.shape:
        raise ValueError(f"need mean and log_var of one shape (N >= 1, D): {tuple(mean.shape)}, {tuple(log_var.shape)}")
    if z is None:
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * eps  # (N, D), z_i ~ q(z|n_i)
    z = z.double()
    log_q_own = normal_log_prob(z, mean, log_var)  # (N, D) log q(z_ij | n_i)
    precision = (-log_var).exp()  # (N, D)
    const = -0.5 * (math.log(2 * math.pi) + log_var)  # (N, D)
    rows = max(1, min(chunk, BLOCK_ELEMENTS // (n * d)))
    log_qz, log_qz_dims = [], []
    for start in over(range(0, n, rows), n, rows, f"KL decomposition, N={n}", enabled=progress):  # O(N² D)
        block = z[start : start + rows, None, :] - mean  # (rows, N, D)
        block.square_().mul_(precision).mul_(-0.5).add_(const)  # log q(z_ij | n), in place: one block in memory
        log_qz.append(torch.logsumexp(block.sum(2), dim=1))  # (rows,)
        log_qz_dims.append(torch.logsumexp(block, dim=1))  # (rows, D)
    log_qz = torch.cat(log_qz) - math.log(n)  # (N,) log q(z_i)
    log_qz_dims = torch.cat(log_qz_dims) - math.log(n)  # (N, D) log q(z_ij)
    result = {
        "index_code_mi": float((log_q_own.sum(1) - log_qz).mean()),
        "total_correlation": float((log_qz - log_qz_dims.sum(1)).mean()),
        "dimwise_kl": None, "dimwise_kl_per_dim": None, "kl": None, "n": n, "note": NOT_FACTORISED_NOTE,
    }
    if log_prob_per_dim is not None:
        log_p = log_prob_per_dim(z).double()  # (N, D) log p(z_ij)
        per_dim = (log_qz_dims - log_p).mean(0)  # (D,) KL(q(z_j) || p(z_j))
        result.update(dimwise_kl=float(per_dim.sum()), dimwise_kl_per_dim=per_dim.tolist(), note=None,
                      kl=float((log_q_own - log_p).sum(1).mean()))
    return result
