"""Is the code used? Active units, the collapse verdict, the dimensions that carry information, and the warning
training logs once."""
import logging

log = logging.getLogger("vae_lab")

ACTIVE_UNIT_THRESHOLD = 0.01
COLLAPSED_KL = 0.1  # nats per image: below this the code carries (almost) no information about x, whatever the units


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Burda et al. 2016, sec. 5.2: dimension u is active when Cov_x(E_q(z|x)[z_u]) > 0.01."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.var(0) > threshold).sum())


def collapse(active, latent_dim, kl):
    """('ok' | 'partial' | 'collapsed', reason): collapsed when no unit is active or the KL is below COLLAPSED_KL."""
    reason = f"{active} of {latent_dim} latent dimensions active; KL {kl:.3g} nats"
    if active == 0 or kl < COLLAPSED_KL:
        return "collapsed", reason
    return ("partial" if active < latent_dim else "ok"), reason


def sorted_kl(kl_per_dim):
    """[[dim, kl], ...], largest KL first."""
    return sorted(([j, v] for j, v in enumerate(kl_per_dim)), key=lambda p: -p[1])


def informative_dims(result, n):
    """The n latent dimensions carrying most information: by KL where the prior's KL splits over dimensions,
    else by the variance of the posterior means (the active-unit statistic)."""
    per_dim = result["posterior_mean_var"]
    if len(result["kl_per_dim"]) == len(per_dim):
        per_dim = result["kl_per_dim"]
    return sorted(range(len(per_dim)), key=lambda j: -per_dim[j])[:n]


class CollapseWatch:
    """Logs one warning, with what to try, once `patience` evaluations in a row report a collapsed posterior."""

    def __init__(self, patience=2):
        self.patience, self.streak, self.warned = patience, 0, False

    def update(self, result, step):
        self.streak = self.streak + 1 if result["collapse"] == "collapsed" else 0
        if self.streak >= self.patience and not self.warned:
            self.warned = True
            log.warning("posterior collapse at step %d, %d evaluations in a row (%s): the decoder ignores z. Try "
                        "loss.reduction=sum (mean multiplies the KL weight by the pixel count), a lower kl.beta, "
                        "a KL warm-up (kl=linear) or free bits (penalty=free_bits).", step, self.streak,
                        result["collapse_reason"])
