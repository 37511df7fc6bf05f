"""The ELBO's terms over a split and every diagnostic of the code, in nats per image: what training logs as val/ and
vae-eval reports on the test split, computed by one function. Its keys are vae_lab.results.MEASURE."""
import math
from typing import NamedTuple

import torch

from vae_lab.codelength import LEVELS, PROBABILITY, UNNORMALISED
from vae_lab.measure.collapse import active_units, collapse, sorted_kl
from vae_lab.measure.decomposition import decompose
from vae_lab.measure.disentanglement.mig_dlib import mig_dlib_codes
from vae_lab.measure.iwae import iwae
from vae_lab.model import eval_mode
from vae_lab.progress import over


@torch.no_grad()
def measure(model, data, split, max_images=None, batch_size=1000, seed=0, iwae_k=0, iwae_images=None,
            iwae_chunk="auto", decomposition_images=None, mig=True, progress=False):
    """ELBO terms and diagnostics over the first `max_images` of `split` (all if None), with a fixed seed for z
    and binarisation; a dict whose keys are those of vae_lab.results.MEASURE that apply.

    The IWAE bound (iwae_k > 0) is computed on the first `iwae_images` of them (all if None), decoding `iwae_chunk`
    codes per pass (vae_lab.measure.iwae). The KL decomposition (vae_lab.measure.decomposition: index-code MI, total
    correlation, dimension-wise KL) is over the first `decomposition_images` (all if None; its cost grows as their
    square, and the MI never exceeds log of their number, so the result records it). With `mig`, MIG (mig_dlib) is
    measured on the posterior means of the split's images where the data has ground-truth factors (vae-eval measures
    it as a disentanglement metric instead). progress=True shows bars with the time left (vae-eval).
    """
    n = data.size(split) if max_images is None else min(max_images, data.size(split))
    g = torch.Generator(device=data.device).manual_seed(seed)
    recon_ll = kl = kl_dims = 0.0
    means, log_vars, factors, elbos = [], [], [], []
    with eval_mode(model):
        for start in over(range(0, n, batch_size), n, batch_size, f"{split}: ELBO", enabled=progress):
            index = torch.arange(start, min(start + batch_size, n), device=data.device)
            terms = model(data.batch(split, index, g), generator=g)
            recon_ll += terms.recon_ll.double().sum()
            kl += terms.kl.double().sum()
            kl_dims = kl_dims + terms.kl.double().sum(0)
            elbos.append(terms.elbo.double())
            means.append(terms.mean.double())
            log_vars.append(terms.log_var.double())
            if mig and data.factor_names:
                factors.append(data.factors(split, index))
        means, log_vars = torch.cat(means), torch.cat(log_vars)
        recon_nll, kl = -float(recon_ll) / n, float(kl) / n
        elbo = -(recon_nll + kl)
        kl_per_dim = (kl_dims / n).tolist()
        active = active_units(means)
        verdict, reason = collapse(active, means.shape[1], kl)
        m = min(n, decomposition_images or n)
        parts = decompose(means[:m], log_vars[:m], g, log_prob_per_dim=model.prior.log_prob_per_dim,
                          progress=progress)
        bits, bits_note = bits_per_dim(elbo, model.likelihood, data)
        result = {
            "elbo": elbo, "recon_nll": recon_nll, "kl": kl, "bits_per_dim": bits, "bits_per_dim_note": bits_note,
            "kl_per_dim": kl_per_dim, "kl_per_dim_sorted": sorted_kl(kl_per_dim),
            "posterior_mean_var": means.var(0).tolist() if n > 1 else [0.0] * means.shape[1],
            "active_units": active, "index_code_mi": parts["index_code_mi"],
            "total_correlation": parts["total_correlation"], "dimwise_kl": parts["dimwise_kl"],
            "decomposition_images": m, "collapse": verdict, "collapse_reason": reason, "images": n,
        }
        if parts["note"]:
            result["decomposition_note"] = parts["note"]
        if iwae_k:  # its own random stream: on dynamically binarised data it draws its own binarisation of the images
            g_iwae = torch.Generator(device=data.device).manual_seed(seed + 1)
            n_iwae = min(n, iwae_images or n)
            result.update(iwae(model, data, split, n_iwae, batch_size, iwae_k, iwae_chunk, g_iwae, progress))
            result["iwae_elbo"] = float(torch.cat(elbos)[:n_iwae].mean())  # the ELBO on the IWAE's images
        if mig and data.factor_names and not torch.isfinite(means).all():  # a diverged model: reported as such, not binned
            result["mig_dlib"], result["mig_dlib_per_factor"] = math.nan, {}
        elif mig and data.factor_names:
            result["mig_dlib"], result["mig_dlib_per_factor"] = mig_dlib_codes(means, torch.cat(factors),
                                                                               list(data.factor_names))
    return result


class BitsPerDim(NamedTuple):
    value: float | None  # bits per dimension (D = channels * height * width), or None where it is no code length
    reason: str  # one line: why it is a code length, or why there is none


def bits_per_dim(elbo, likelihood, data):
    """BitsPerDim(value or None, reason) for `elbo`, a lower bound on log p(x) in nats per image (the ELBO, or
    -iwae_nll), of `data` under `likelihood`: a value only where -ELBO is a code length (vae_lab.codelength)."""
    kind, why = likelihood.log_prob_kind(data)
    d = data.num_pixels
    name = type(likelihood).__name__
    if kind == PROBABILITY:
        return BitsPerDim(-elbo / (d * math.log(2)), f"{why}: -ELBO / (D ln 2) bounds its code length")
    if kind == UNNORMALISED:
        return BitsPerDim(None, why)
    # a density: a code length only of dequantised data
    if data.dequantize == "uniform":
        # Theis et al. 2016, sec. 3.1: with y = (x + u) / 256, u ~ U[0, 1)^D, the discrete model
        # P(x) = ∫ p(y) dy over x's cell of side 1/256 satisfies, by Jensen,
        # log P(x) = log E_u[p(y)] - D log 256 >= E_u[log p(y)] - D log 256 >= E_u[ELBO(y)] - D log 256.
        value = (-elbo + d * math.log(LEVELS)) / (d * math.log(2))
        return BitsPerDim(value, f"{name} on uniformly dequantised 8-bit data: (-ELBO + D log 256) / (D ln 2) bounds "
                                 "the code length of the 8-bit image (Theis et al. 2016)")
    if data.binary:
        return BitsPerDim(None, f"{name} on binary pixels is a density, not a code length: use likelihood=bernoulli")
    return BitsPerDim(None, f"{name} on grey levels without dequantisation is a density, not a code length: "
                            "train with dataset.dequantize=uniform")
