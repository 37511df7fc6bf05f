"""The importance-weighted bound on -log p(x) (Burda et al. 2016), the "test NLL" of the VAE literature."""
import logging
import math
import time

import torch

from vae_lab.priors import normal_log_prob
from vae_lab.progress import bar

log = logging.getLogger("vae_lab")

MEMORY = 2**30  # bytes an IWAE pass may take when its chunk is "auto"
SLOW_S = 60  # a pass estimated to take longer than this is announced with how to shorten it


def iwae(model, data, split, n, batch_size, k, chunk, generator, progress):
    """{iwae_nll, iwae_k, iwae_images}: the k-sample bound averaged over the first n images of `split`, decoding
    `chunk` codes per pass ("auto": as many as fit in MEMORY)."""
    if chunk == "auto":
        chunk = auto_chunk(model, model.prior.latent_dim, data.device, MEMORY)
    per_batch = max(1, min(batch_size, chunk // k))  # images per pass over their k samples
    total, start, started = 0.0, 0, time.perf_counter()
    with bar(n, f"{split}: IWAE k={k}", "image", enabled=progress) as b:
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
            b.update(stop - start)
            start = stop
    return {"iwae_nll": total / n, "iwae_k": k, "iwae_images": n}


@torch.no_grad()
def log_weights(model, x, k, generator=None, chunk=16384):
    """(B, k) float64 log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016, eq. 8).

    Samples are drawn `chunk // B` at a time (at least one), so at most max(chunk, B) codes are decoded at once.
    """
    mean, log_var = (t.float() for t in model.encoder(x))  # (B, D)
    b, d = mean.shape
    per_pass = max(1, chunk // b)
    out = []
    for start in range(0, k, per_pass):
        c = min(per_pass, k - start)
        eps = torch.randn((c, b, d), generator=generator, device=mean.device, dtype=mean.dtype)
        z = (mean + (0.5 * log_var).exp() * eps).reshape(c * b, d)  # sample-major: row s * b + i is image i
        m, v = mean.repeat(c, 1), log_var.repeat(c, 1)
        xs = x.expand(c, *x.shape).reshape(c * b, *x.shape[1:])
        log_px = model.likelihood.log_prob(xs, model.decoder(z).float())  # (c * b,)
        lw = log_px.double() + model.prior.log_prob(z).double() - normal_log_prob(z, m, v).sum(1).double()
        out.append(lw.view(c, b).T)
    return torch.cat(out, 1)


def iwae_nll(model, x, k, generator=None, chunk=16384):
    """(B,) float64: -log (1/k sum_i w_i), the k-sample IWAE bound on -log p(x), in nats per image.

    Its expectation decreases with k towards -log p(x) (Burda et al. 2016, Theorem 1); k = 1 is -ELBO.
    """
    lw = log_weights(model, x, k, generator, chunk)
    return -(torch.logsumexp(lw, dim=1) - math.log(k))


@torch.no_grad()
def bytes_per_code(model, latent_dim, device):
    """Memory one decoded code takes in an IWAE pass: every activation the decoder produces for it (an upper bound:
    they need not all be alive at once) plus the likelihood's per-pixel temporaries, float32, measured by hooks on
    one forward pass of a single code."""
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() if torch.is_tensor(out) else 0))
             for m in model.decoder.modules()]
    try:
        params = model.decoder(torch.zeros(1, latent_dim, device=device))
    finally:
        for h in hooks:
            h.remove()
    return 4 * (sum(sizes) + 4 * params.numel())  # x repeated, params, log p per pixel, and one more temporary


def auto_chunk(model, latent_dim, device, memory_bytes):
    """Codes decoded per pass so that an IWAE pass stays within `memory_bytes` (at least 1)."""
    return max(1, int(memory_bytes // bytes_per_code(model, latent_dim, device)))
