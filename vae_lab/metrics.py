"""Validation and test figures, in nats per image; one definition used by training and evaluation."""
import math

import torch

from vae_lab.diagnostics import collapse, mutual_information, sorted_kl
from vae_lab.iwae import iwae_nll
from vae_lab.mig import mig

ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def measure(model, data, split, max_images=None, batch_size=1000, seed=0, iwae_k=0, iwae_chunk=16384,
             mi_images=None):
    """ELBO terms and diagnostics over the first `max_images` of `split` (all if None), with a fixed seed for z
    and binarisation. The IWAE bound, when iwae_k > 0, is computed on the same images; the mutual information on
    the first `mi_images` of them (all if None; its cost grows as their square, and it never exceeds log mi_images).

    Returns elbo, recon_nll, kl, bits_per_dim, kl_per_dim (list, nats), kl_per_dim_sorted ([[dim, kl], ...]),
    posterior_mean_var (list), active_units, mutual_information, collapse, collapse_reason, images; iwae_nll and
    iwae_k when iwae_k > 0; mig and mig_per_factor when the dataset has ground-truth factors.
    """
    was_training = model.training
    model.eval()
    n = data.size(split) if max_images is None else min(max_images, data.size(split))
    g = torch.Generator(device=data.device).manual_seed(seed)
    sums = {"recon_ll": 0.0, "kl": 0.0, "iwae_nll": 0.0}
    kl_dims, means, log_vars, factors = 0.0, [], [], []
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n), device=data.device)
        x = data.batch(split, index, g)
        terms = model(x, generator=g)
        sums["recon_ll"] += terms.recon_ll.double().sum()
        sums["kl"] += terms.kl.double().sum()
        kl_dims = kl_dims + terms.kl.double().sum(0)
        means.append(terms.mean.double())
        log_vars.append(terms.log_var.double())
        if iwae_k:
            sums["iwae_nll"] += iwae_nll(model, x, iwae_k, g, iwae_chunk).sum()
        if data.factor_names:
            factors.append(data.factors(split, index))
    model.train(was_training)
    means, log_vars = torch.cat(means), torch.cat(log_vars)
    recon_nll = -float(sums["recon_ll"]) / n
    kl = float(sums["kl"]) / n
    elbo = -(recon_nll + kl)
    kl_per_dim = (kl_dims / n).tolist()
    active = active_units(means)
    verdict, reason = collapse(active, means.shape[1], kl)
    figures = {
        "elbo": elbo,
        "recon_nll": recon_nll,
        "kl": kl,
        "bits_per_dim": -elbo / (data.num_pixels * math.log(2)),
        "kl_per_dim": kl_per_dim,
        "kl_per_dim_sorted": sorted_kl(kl_per_dim),
        "posterior_mean_var": means.var(0).tolist() if n > 1 else [0.0] * means.shape[1],
        "active_units": active,
        "mutual_information": mutual_information(means[:mi_images], log_vars[:mi_images], g),
        "mi_images": min(n, mi_images or n),
        "collapse": verdict,
        "collapse_reason": reason,
        "images": n,
    }
    if iwae_k:
        figures.update(iwae_nll=float(sums["iwae_nll"]) / n, iwae_k=iwae_k)
    if data.factor_names:
        figures["mig"], figures["mig_per_factor"] = mig(means, torch.cat(factors), list(data.factor_names))
    return figures


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Burda et al. 2016, sec. 5.2: dimension u is active when Cov_x(E_q(z|x)[z_u]) > 0.01."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.var(0) > threshold).sum())
