"""Validation and test figures, in nats per image; one definition used by training and evaluation."""
import logging
import math
import sys
import time

import torch
from tqdm import tqdm

from vae_lab.codelength import bits_per_dim
from vae_lab.measure.collapse import collapse, sorted_kl
from vae_lab.measure.decomposition import decompose
from vae_lab.measure.disentanglement.mig_dlib import mig_dlib_codes as mig
from vae_lab.measure.iwae import auto_chunk, iwae_nll

log = logging.getLogger("vae_lab")

ACTIVE_UNIT_THRESHOLD = 0.01
IWAE_MEMORY = 2**30  # bytes an IWAE pass may take when iwae_chunk is "auto"
SLOW_S = 60  # a part estimated to take longer than this is announced with how to shorten it


@torch.no_grad()
def measure(model, data, split, max_images=None, batch_size=1000, seed=0, iwae_k=0, iwae_images=None,
            iwae_chunk="auto", decomposition_images=None, progress=False):
    """ELBO terms and diagnostics over the first `max_images` of `split` (all if None), with a fixed seed for z
    and binarisation.

    The IWAE bound (iwae_k > 0) is computed on the first `iwae_images` of them (all if None), decoding `iwae_chunk`
    codes per pass ("auto": as many as fit in IWAE_MEMORY). The KL decomposition (vae_lab.measure.decomposition: index-code
    MI, total correlation, dimension-wise KL) is over the first `decomposition_images` (all if None; its cost grows
    as their square, and the MI never exceeds log of their number, so the result records it). progress=True shows
    bars with the time left (vae-eval), and announces a long IWAE pass with how to shorten it.

    Returns elbo, recon_nll, kl, bits_per_dim (None where -ELBO is no code length) and bits_per_dim_note (why),
    kl_per_dim (list, nats), kl_per_dim_sorted ([[dim, kl], ...]),
    posterior_mean_var (list), active_units, index_code_mi, total_correlation, dimwise_kl (None, with
    decomposition_note, for a prior that is not factorised), decomposition_images, collapse, collapse_reason, images;
    iwae_nll, iwae_k, iwae_images and iwae_elbo (the ELBO of those images) when iwae_k > 0; mig and mig_per_factor when the dataset has factors.
    """
    was_training = model.training
    model.eval()
    n = data.size(split) if max_images is None else min(max_images, data.size(split))
    g = torch.Generator(device=data.device).manual_seed(seed)
    sums = {"recon_ll": 0.0, "kl": 0.0}
    kl_dims, means, log_vars, factors, elbos = 0.0, [], [], [], []
    for start in _bar(range(0, n, batch_size), progress, f"{split}: ELBO", batch_size, n):
        index = torch.arange(start, min(start + batch_size, n), device=data.device)
        terms = model(data.batch(split, index, g), generator=g)
        sums["recon_ll"] += terms.recon_ll.double().sum()
        sums["kl"] += terms.kl.double().sum()
        kl_dims = kl_dims + terms.kl.double().sum(0)
        elbos.append(terms.elbo.double())
        means.append(terms.mean.double())
        log_vars.append(terms.log_var.double())
        if data.factor_names:
            factors.append(data.factors(split, index))
    means, log_vars = torch.cat(means), torch.cat(log_vars)
    recon_nll = -float(sums["recon_ll"]) / n
    kl = float(sums["kl"]) / n
    elbo = -(recon_nll + kl)
    kl_per_dim = (kl_dims / n).tolist()
    active = active_units(means)
    verdict, reason = collapse(active, means.shape[1], kl)
    m = min(n, decomposition_images or n)
    parts = decompose(means[:m], log_vars[:m], g, factorised=model.prior.factorised, progress=progress)
    figures = {
        "elbo": elbo,
        "recon_nll": recon_nll,
        "kl": kl,
        **dict(zip(("bits_per_dim", "bits_per_dim_note"), bits_per_dim(elbo, model.likelihood, data))),
        "kl_per_dim": kl_per_dim,
        "kl_per_dim_sorted": sorted_kl(kl_per_dim),
        "posterior_mean_var": means.var(0).tolist() if n > 1 else [0.0] * means.shape[1],
        "active_units": active,
        "index_code_mi": parts["index_code_mi"],
        "total_correlation": parts["total_correlation"],
        "dimwise_kl": parts["dimwise_kl"],
        "decomposition_images": m,
        "collapse": verdict,
        "collapse_reason": reason,
        "images": n,
    }
    if parts["note"]:
        figures["decomposition_note"] = parts["note"]
    if iwae_k:  # its own random stream: on dynamically binarised data it draws its own binarisation of the images
        g_iwae = torch.Generator(device=data.device).manual_seed(seed + 1)
        n_iwae = min(n, iwae_images or n)
        figures.update(iwae(model, data, split, n_iwae, batch_size, iwae_k, iwae_chunk, g_iwae, progress))
        figures["iwae_elbo"] = float(torch.cat(elbos)[:n_iwae].mean())  # the ELBO on the IWAE's images
    if data.factor_names and not torch.isfinite(means).all():  # a diverged model: reported as such, not binned
        figures["mig"], figures["mig_per_factor"] = math.nan, {}
    elif data.factor_names:
        figures["mig"], figures["mig_per_factor"] = mig(means, torch.cat(factors), list(data.factor_names))
    model.train(was_training)
    return figures


def iwae(model, data, split, n, batch_size, k, chunk, generator, progress):
    """{iwae_nll, iwae_k, iwae_images}: the k-sample bound averaged over the first n images of `split`."""
    if chunk == "auto":
        chunk = auto_chunk(model, model.prior.latent_dim, data.device, IWAE_MEMORY)
    per_batch = max(1, min(batch_size, chunk // k))  # images per pass over their k samples
    total, start, started = 0.0, 0, time.perf_counter()
    with _bar(None, progress, f"{split}: IWAE k={k}", 1, n, unit="image") as bar:
        while start < n:
            stop = min(start + per_batch, n)
            x = data.batch(split, torch.arange(start, stop, device=data.device), generator)
            total += float(iwae_nll(model, x, k, generator, chunk).sum())
            if start == 0 and progress:
                estimate = (time.perf_counter() - started) * n / stop
                if estimate > SLOW_S:
                    log.warning("IWAE with k=%d on %d images will take about %.0f s here; for a quicker figure: "
                                "iwae.images=%d or iwae.k=%d (iwae.k=0 skips it)", k, n, estimate,
                                max(1, int(n * SLOW_S / estimate)), max(1, int(k * SLOW_S / estimate)))
            bar.update(stop - start)
            start = stop
    return {"iwae_nll": total / n, "iwae_k": k, "iwae_images": n}


def _bar(iterable, progress, desc, step, total, unit="image"):
    """A tqdm bar (to stderr, with the time left) over `total` items when `progress`, else a silent one."""
    if iterable is not None and not progress:
        return iterable
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5)
    if iterable is None:
        return bar
    return _counting(iterable, bar, step, total)


def _counting(iterable, bar, step, total):
    with bar:
        for start in iterable:
            yield start
            bar.update(min(step, total - start))


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Burda et al. 2016, sec. 5.2: dimension u is active when Cov_x(E_q(z|x)[z_u]) > 0.01."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.var(0) > threshold).sum())
