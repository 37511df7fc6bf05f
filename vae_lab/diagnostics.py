"""Is the code used? Mutual information I(x; z), the collapse verdict, and the warning training logs once."""
import logging
import math

import torch

from vae_lab.priors import normal_log_prob

log = logging.getLogger("vae_lab")

COLLAPSED_KL = 0.1  # nats per image: below this the code carries (almost) no information about x, whatever the units


@torch.no_grad()
def mutual_information(mean, log_var, generator=None, chunk=1024):
    """I(x; z) under the aggregate posterior q(z) = 1/N sum_n q(z|x_n) of the N images given, in nats.

    Hoffman & Johnson 2016's decomposition, estimated as in He et al. 2019 (`calc_mi`):
    I = E_x E_q(z|x)[log q(z|x) - log q(z)], one z per image, log q(z) by log-sum-exp over all N posteriors.
    He et al. use the analytic entropy for the first term; evaluating it at the same z as the second has the
    same expectation and far less variance (exactly 0 when every posterior is the same). At most log N.
    mean, log_var: (N, D).
    """
    mean, log_var = mean.double(), log_var.double()
    n, d = mean.shape
    if n < 2:
        return 0.0
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    z = mean + (0.5 * log_var).exp() * eps  # (N, D), z_i ~ q(z|x_i)
    log_q_own = normal_log_prob(z, mean, log_var).sum(1)  # (N,) log q(z_i|x_i)
    precision = (-log_var).exp()  # (N, D)
    # sum_d (z_id - m_nd)^2 / s_nd^2 expanded into matrix products: (N_z, N) without an (N_z, N, D) tensor
    const = -0.5 * (d * math.log(2 * math.pi) + log_var.sum(1) + (mean**2 * precision).sum(1))  # (N,)
    log_qz = []
    for start in range(0, n, chunk):
        zc = z[start : start + chunk]
        quad = zc**2 @ precision.T - 2 * zc @ (mean * precision).T  # (chunk, N)
        log_qz.append(torch.logsumexp(const - 0.5 * quad, dim=1) - math.log(n))
    return float((log_q_own - torch.cat(log_qz)).mean())


def collapse(active, latent_dim, kl):
    """('ok' | 'partial' | 'collapsed', reason): collapsed when no unit is active or the KL is below COLLAPSED_KL."""
    reason = f"{active} of {latent_dim} latent dimensions active; KL {kl:.3g} nats"
    if active == 0 or kl < COLLAPSED_KL:
        return "collapsed", reason
    return ("partial" if active < latent_dim else "ok"), reason


def sorted_kl(kl_per_dim):
    """[[dim, kl], ...], largest KL first."""
    return sorted(([j, v] for j, v in enumerate(kl_per_dim)), key=lambda p: -p[1])


def informative_dims(figures, n):
    """The n latent dimensions carrying most information: by KL where the prior's KL splits over dimensions,
    else by the variance of the posterior means (the active-unit statistic)."""
    per_dim = figures["posterior_mean_var"]
    if len(figures["kl_per_dim"]) == len(per_dim):
        per_dim = figures["kl_per_dim"]
    return sorted(range(len(per_dim)), key=lambda j: -per_dim[j])[:n]


class CollapseWatch:
    """Logs one warning, with what to try, once `patience` evaluations in a row report a collapsed posterior."""

    def __init__(self, patience=2):
        self.patience, self.streak, self.warned = patience, 0, False

    def update(self, figures, step):
        self.streak = self.streak + 1 if figures["collapse"] == "collapsed" else 0
        if self.streak >= self.patience and not self.warned:
            self.warned = True
            log.warning("posterior collapse at step %d, %d evaluations in a row (%s): the decoder ignores z. Try "
                        "loss.reduction=sum (mean multiplies the KL weight by the pixel count), a lower kl.beta, "
                        "a KL warm-up (kl=linear) or free bits (kl=free_bits).", step, self.streak,
                        figures["collapse_reason"])
