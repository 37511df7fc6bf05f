"""The mutual information gap as Chen et al. 2018 compute it: entropies of sampled codes under the posterior mixture."""
import math

import torch

from vae_lab.data.base import unravel_index
from vae_lab.measure.disentanglement.base import Metric, check_factors, generators
from vae_lab.progress import bar as progress_bar


def posterior_entropies(z, mean, log_var, n_samples, generator, bar=None, budget=2**23):
    """(D,) H(z_j) = E[-log q(z_j)] with q(z_j) = 1/N sum_n q(z_j|x_n) over the N posteriors given (mean, log_var
    (N, D)), averaged over `n_samples` of the samples z (N, D) drawn at random (all when N is smaller); Chen et al.
    2018, rtqichen/beta-tcvae disentanglement_metrics.py, estimate_entropies, with weights None."""
    n, d = mean.shape
    zs = z[torch.randperm(n, generator=generator)[:n_samples].to(z.device), :, None]  # (S, D, 1)
    # log N(z; m, v) = -(z - m)^2 / (2v) - (log v + log 2 pi) / 2, with the posteriors laid out (D, N) so that the
    # log-sum-exp over n runs along contiguous memory
    mean_t, neg_half_precision = mean.T.contiguous(), (-0.5 * torch.exp(-log_var)).T.contiguous()
    const = (-0.5 * (log_var + math.log(2 * math.pi))).T.contiguous()
    chunk = max(1, budget // (n * d))  # samples per pass: `budget` elements of (c, D, N) at a time
    total = torch.zeros(d, dtype=torch.float64, device=z.device)
    for start in range(0, len(zs), chunk):
        log_q = torch.sub(zs[start : start + chunk], mean_t)  # (c, D, N)
        torch.addcmul(const, log_q.square_(), neg_half_precision, out=log_q)  # log q(z_j | x_n)
        total += (math.log(n) - torch.logsumexp(log_q, dim=2)).double().sum(0)  # -log q(z_j), summed over c
        if bar is not None:
            bar.update(len(log_q) * n)  # (sample, posterior) pairs evaluated
    return total.cpu() / len(zs)


def mig_chen(encode, data, n_images=None, n_samples=10_000, leave_out=("shape",), seed=0, batch_size=2048,
             progress=False):
    """MIG as Chen et al. 2018 compute it (rtqichen/beta-tcvae: disentanglement_metrics.py,
    mutual_info_metric_shapes; metric_helpers/mi_metric.py). One sample z ~ q(z|x) per image of the grid; H(z_j)
    from the mixture of all N posteriors, H(z_j | v_k) as the average over the values of v_k of the entropy under
    the mixture of the posteriors sharing that value, each over at most `n_samples` samples; I = H(z_j) - H(z_j|v_k)
    sorted over j and clamped at 0, divided by log |v_k|, gap of the top two, mean over factors. Factors named in
    `leave_out` are skipped (Chen et al. leave dSprites' shape out).

    `encode` maps images to (mean, log_var). n_images None is their protocol, the whole grid; a number takes that
    many distinct grid points at random instead, a smaller "dataset" on which each conditional mixture has about
    n_images / |v_k| components. Returns {"score", "per_factor", "mutual_info" ({factor: [I(z_j; v_k) per j]}),
    "n_images", "n_samples", "whole_grid"}.
    """
    check_factors(data)
    sizes, names = data.factor_sizes, data.factor_names
    grid = math.prod(sizes)
    g, image_g = generators(data, seed)
    whole = n_images is None or n_images >= grid
    index = torch.arange(grid) if whole else torch.randperm(grid, generator=g)[:n_images]
    factors = unravel_index(index, sizes)  # (N, K)
    n = len(factors)
    kept = [k for k, name in enumerate(names) if name not in leave_out]
    means, log_vars = [], []
    with progress_bar(n, "mig_chen: encode", "img", enabled=progress, unit_scale=True) as bar, torch.no_grad():
        for start in range(0, n, batch_size):
            mean, log_var = encode(data.images_for_factors(factors[start : start + batch_size], image_g))
            means.append(torch.as_tensor(mean).detach().float())
            log_vars.append(torch.as_tensor(log_var).detach().float())
            bar.update(len(means[-1]))
    mean, log_var = torch.cat(means), torch.cat(log_vars)  # (N, D)
    z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=g).to(mean.device)  # one z per image
    groups = {k: [(factors[:, k] == v).nonzero()[:, 0].to(mean.device) for v in range(sizes[k])] for k in kept}
    pairs = min(n, n_samples) * n + sum(min(len(r), n_samples) * len(r) for k in kept for r in groups[k])
    with progress_bar(pairs, "mig_chen: entropies", "pair", enabled=progress, unit_scale=True) as bar:
        marginal = posterior_entropies(z, mean, log_var, n_samples, g, bar)  # (D,)
        mutual_info = {}
        for k in kept:
            conditional = torch.zeros_like(marginal)
            for rows in groups[k]:  # weight |rows| / N: 1 / |v_k| on the whole grid, as in Chen et al.
                if len(rows):
                    conditional += len(rows) / n * posterior_entropies(z[rows], mean[rows], log_var[rows],
                                                                       n_samples, g, bar)
            mutual_info[names[k]] = marginal - conditional  # (D,)
    gaps = {}
    for k in kept:
        top = torch.sort(mutual_info[names[k]], descending=True).values.clamp(min=0) / math.log(sizes[k])
        gaps[names[k]] = float(top[0] - (top[1] if len(top) > 1 else 0.0))
    return {"score": sum(gaps.values()) / len(gaps) if gaps else 0.0, "per_factor": gaps,
            "mutual_info": {name: mi.tolist() for name, mi in mutual_info.items()},
            "n_images": n, "n_samples": min(n, n_samples), "whole_grid": whole}


METRIC = Metric(
    "mig_chen", mig_chen,
    # rtqichen/beta-tcvae disentanglement_metrics.py: every image of the grid (n_images None), 10,000 samples per
    # entropy
    full={"n_images": None, "n_samples": 10_000},
    # the entropies over 10,000 random grid points instead of all of them, from 2,000 samples each
    quick={"n_images": 10_000, "n_samples": 2_000},
    headline=("score",),
    needs_log_var=True,  # one z ~ q(z|x) per image
)
