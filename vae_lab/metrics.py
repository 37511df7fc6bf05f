"""Validation and test figures, in nats per image; one definition used by training and evaluation."""
import math

import torch

ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def evaluate(model, data, split, max_images=None, batch_size=1000, seed=0):
    """ELBO terms over the first `max_images` of `split` (all if None), with a fixed seed for z and binarisation.

    Returns elbo, recon_nll, kl, bits_per_dim, kl_per_dim (list, nats), active_units, images.
    """
    was_training = model.training
    model.eval()
    n = data.size(split) if max_images is None else min(max_images, data.size(split))
    g = torch.Generator(device=data.device).manual_seed(seed)
    sums = {"recon_ll": 0.0, "kl": 0.0}
    kl_dims, means = 0.0, []
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n), device=data.device)
        terms = model(data.batch(split, index, g), generator=g)
        sums["recon_ll"] += terms.recon_ll.double().sum()
        sums["kl"] += terms.kl.double().sum()
        kl_dims = kl_dims + terms.kl.double().sum(0)
        means.append(terms.mean.double())
    model.train(was_training)
    recon_nll = -float(sums["recon_ll"]) / n
    kl = float(sums["kl"]) / n
    elbo = -(recon_nll + kl)
    return {
        "elbo": elbo,
        "recon_nll": recon_nll,
        "kl": kl,
        "bits_per_dim": -elbo / (data.num_pixels * math.log(2)),
        "kl_per_dim": (kl_dims / n).tolist(),
        "active_units": active_units(torch.cat(means)),
        "images": n,
    }


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Burda et al. 2016, sec. 5.2: dimension u is active when Cov_x(E_q(z|x)[z_u]) > 0.01."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.var(0) > threshold).sum())
