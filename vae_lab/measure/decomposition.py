"""The KL term decomposed: index-code mutual information, total correlation and dimension-wise KL.

Hoffman & Johnson 2016; Chen et al. 2018 ("Isolating Sources of Disentanglement in VAEs"), eq. 2. With n the image
index, q(z) = 1/N sum_n q(z|n) the aggregate posterior and a factorised prior p(z) = prod_j p(z_j):

    E_n[KL(q(z|n) || p(z))] = I_q(z; n) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j))
                              index-code MI    total correlation (TC)     dimension-wise KL (dim-KL)

Every term is E_q(z,n)[log a(z) - log b(z)] for densities a, b among q(z|n), q(z), prod_j q(z_j), p(z), so one
sample z_i ~ q(z|n_i) per image and an estimate of log q(z_i) and of each log q(z_ij) give all three; the three
always sum to the single-sample KL estimate log q(z_i|n_i) - log p(z_i), whatever the estimator of log q.

`decompose` evaluates the aggregate over all N images given (the figure to report, with its N); `minibatch_terms`
estimates it from one batch (the differentiable terms of a β-TCVAE objective), by minibatch-weighted sampling (MWS)
or minibatch-stratified sampling (MSS), both from Chen et al. 2018 (Sec. 4.1 and the appendix).

Bias of each minibatch estimator against the full-data estimate on the same z, the behaviour to expect (measured on
the toy of tests/test_decomposition.py, `test_minibatch_bias_against_the_full_data_estimate`: N = 1000 images, D = 4,
posterior means from a correlated Gaussian, log-variance -2; full data MI 3.69, TC 0.61, dim-KL 0.02 nats; mean over
1000 random batches, nats, with the spread of one batch's figure for MSS):

    batch   estimator   MI bias   TC bias   dim-KL bias   one batch's spread (MI, TC, dim-KL)
    64      MWS         +6.36     +21.16    -27.51
    64      MSS         +0.40     -0.28     -0.12         0.25, 0.17, 0.07
    256     MWS         +6.74     +20.86    -27.61
    256     MSS         +0.10     -0.08     -0.02         0.10, 0.06, 0.02

MWS divides every q(z|n_j) by N·M: the other members of the batch, which carry the marginals q(z_j), count about N
times too little, so each log q(z_j) comes out about log N too low (dim-KL off by about -D·log N = -27.6 here) and TC
too high by about (D - 1)·log N = 20.7; log q(z) is too low as well, so MI rises (this MI can exceed log N, up to
log(N·M)). MSS estimates q(z_i) and each q(z_ij) without bias; the log of such an estimate is biased low (Jensen's
inequality), most for the joint q(z_i), whose mass sits on the few images near z_i: MI comes out a little high, TC a
little low, and the bias falls roughly as 1/M.
"""
import math
import sys

import torch

from vae_lab.priors import normal_log_prob

ESTIMATORS = ("mss", "mws")
BLOCK_ELEMENTS = 2**24  # elements of one (chunk, N, D) float64 block in `decompose`: 128 MiB, a few alive at once
NOT_FACTORISED_NOTE = ("dimwise_kl is not defined: the prior is not factorised (p(z) != prod_j p(z_j)), so "
                       "sum_j KL(q(z_j) || p(z_j)) is not a term of the KL; index_code_mi and total_correlation do not "
                       "involve the prior and are reported")


def standard_normal_log_prob(z):
    """log N(z_j; 0, 1) per dimension, same shape as z."""
    return normal_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))


def log_density_matrix(z, mean, log_var):
    """log q(z_id | n_j) for codes z (B, D) under N diagonal Gaussians (N, D): (B, N, D)."""
    return normal_log_prob(z[:, None, :], mean[None], log_var[None])


@torch.no_grad()
def decompose(mean, log_var, generator=None, prior_log_prob_per_dim=None, factorised=True, chunk=1024, z=None,
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

    prior_log_prob_per_dim(z) -> (B, D) is log p(z_j) per dimension (default: standard normal). With
    factorised=False (mixture and VampPrior priors) dimwise_kl, its per-dimension list and kl are None and `note`
    says why; otherwise `note` is None.
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
    starts = range(0, n, rows)
    if progress:  # O(N² D): seconds for a few thousand images, minutes for tens of thousands
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"KL decomposition, N={n}", unit="block", file=sys.stderr, dynamic_ncols=True)
    for start in starts:
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
    if factorised:
        log_p = (prior_log_prob_per_dim or standard_normal_log_prob)(z).double()  # (N, D) log p(z_ij)
        per_dim = (log_qz_dims - log_p).mean(0)  # (D,) KL(q(z_j) || p(z_j))
        result.update(dimwise_kl=float(per_dim.sum()), dimwise_kl_per_dim=per_dim.tolist(), note=None,
                      kl=float((log_q_own - log_p).sum(1).mean()))
    return result


def log_weight_matrix(batch_size, dataset_size, estimator="mss", dtype=torch.float32, device=None):
    """log w_ij, (M, M): log q(z_i) is estimated as logsumexp_j [log w_ij + log q(z_i | n_j)] over a batch of M."""
    m, n = batch_size, dataset_size
    if estimator == "mws":
        # Chen et al. 2018, Sec. 4.1 (MWS): q(z_i) ~ 1/(N M) sum_j q(z_i | n_j), as the paper defines it
        return torch.full((m, m), -math.log(n * m), dtype=dtype, device=device)
    if estimator != "mss":
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    if m < 2 or n < m:
        raise ValueError(f"MSS needs 2 <= batch size <= dataset size; got batch {m}, dataset {n}")
    # Minibatch-stratified sampling (Chen et al. 2018, appendix), with equal weights on the other members:
    #   q(z_i) = 1/N q(z_i | n_i) + 1/N sum_{n != n_i} q(z_i | n)
    #         ~ 1/N q(z_i | n_i) + (N-1)/(N (M-1)) sum_{j != i} q(z_i | n_j).
    # The M-1 other members of a batch drawn without replacement are each a uniform draw from the N-1 other images,
    # so the second sum is unbiased for the first; and of all weightings with that property, equal weights on
    # exchangeable draws have the least variance. With M = N (the whole data set) every weight is 1/N and this is
    # exactly the full-data estimate. Each row sums to 1; weights depend only on M and N.
    # rtqichen/beta-tcvae (vae_quant.py, `_log_importance_weight_matrix`) has three values, 1/N, (N-M)/(N M) and 1/M
    # with M = batch size - 1, and by their sum seems to mean 1/N on the diagonal, (N-M)/(N M) on one other entry of
    # each row and 1/M on the rest. But its strided writes `view(-1)[::M+1]` and `[1::M+1]` step by the batch size,
    # so they fill the first column (1/N) and the second ((N-M)/(N M)); the diagonal keeps 1/M for every row i >= 2
    # (its open pull request #1). The own posterior, which must count 1/N, counts 1/M: for a code that tells the
    # images apart, log q(z_i) comes out near log q(z_i|n_i) - log M, so the MI estimate stays near log M (4.1 nats
    # for batches of 64) whatever N; on the bias toy of the module docstring it measured MI -0.54, TC +0.43,
    # dim-KL +0.12 at M = 64 (equal weights as here: +0.40, -0.28, -0.12), and it does not become the full-data
    # estimate at M = N. We read that code to learn, copied none of it, and weight the entries by the definition above.
    log_w = torch.full((m, m), math.log((n - 1) / (n * (m - 1))), dtype=dtype, device=device)
    return log_w.fill_diagonal_(-math.log(n))


def minibatch_terms(z, mean, log_var, dataset_size, estimator="mss", prior_log_prob_per_dim=None):
    """(MI, TC, dim-KL), scalar tensors averaged over the batch, from z (M, D), z_i ~ q(z|n_i), and its posteriors.

    Differentiable and in the batch's dtype: the terms of a β-TCVAE objective (Chen et al. 2018, Sec. 4). dataset_size
    is N, the number of images the batch is drawn from; estimator is "mss" or "mws" (see the module docstring for
    each one's bias). prior_log_prob_per_dim(z) -> (M, D) is log p(z_j) per dimension (default: standard normal);
    the dimension-wise term needs a factorised prior.
    """
    m = z.shape[0]
    log_q_own = normal_log_prob(z, mean, log_var).sum(1)  # (M,) log q(z_i | n_i)
    log_q = log_density_matrix(z, mean, log_var)  # (M, M, D) log q(z_id | n_j)
    log_w = log_weight_matrix(m, dataset_size, estimator, dtype=z.dtype, device=z.device)  # (M, M)
    log_qz = torch.logsumexp(log_w + log_q.sum(2), dim=1)  # (M,) log q(z_i)
    log_qz_dims = torch.logsumexp(log_w[:, :, None] + log_q, dim=1)  # (M, D) log q(z_id), same weights per dimension
    log_p = (prior_log_prob_per_dim or standard_normal_log_prob)(z)  # (M, D) log p(z_id)
    mi = (log_q_own - log_qz).mean()
    tc = (log_qz - log_qz_dims.sum(1)).mean()
    dimwise_kl = (log_qz_dims - log_p).sum(1).mean()
    return mi, tc, dimwise_kl
