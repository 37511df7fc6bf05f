"""The IWAE bound against a model whose marginal likelihood is known in closed form, and against the ELBO."""
import math

import pytest
import torch
from helpers import TINY, compose_config, options
from torch import distributions as D
from torch import nn

from vae_lab.likelihoods import Gaussian
from vae_lab.measure.elbo import measure
from vae_lab.measure.iwae import iwae_nll
from vae_lab.model import VAE
from vae_lab.priors import StandardNormal
from vae_lab.runtime.build import build, build_model

P, LATENT, SIGMA = 4, 2, 0.5


class LinearDecoder(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z):
        return (z @ self.w.T + self.b).view(-1, 1, 1, P)


class SloppyEncoder(nn.Module):
    """The exact posterior's mean shrunk and its variance inflated, so the bound is loose at k = 1 and the
    importance weights keep a finite variance."""

    def __init__(self, w, b):
        super().__init__()
        cov = torch.linalg.inv(torch.eye(LATENT) + w.T @ w / SIGMA**2)  # exact posterior covariance
        self.gain, self.b = cov @ w.T / SIGMA**2, b
        self.log_var = cov.diagonal().log() + 0.5

    def forward(self, x):
        mean = 0.8 * (x.flatten(1) - self.b) @ self.gain.T
        return mean, self.log_var.expand_as(mean)


@pytest.fixture(scope="module")
def linear_gaussian():
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I), so p(x) = N(b, W W^T + s^2 I) exactly."""
    g = torch.Generator().manual_seed(0)
    # orthogonal columns make the exact posterior diagonal, so the sloppy q can be wider than it in every direction
    w = torch.linalg.qr(torch.randn(P, LATENT, generator=g))[0] * torch.tensor([1.5, 0.7])
    b = torch.randn(P, generator=g)
    model = VAE(SloppyEncoder(w, b), LinearDecoder(w, b), Gaussian((1, 1, P), sigma=SIGMA), StandardNormal(LATENT))
    exact = D.MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(P))
    z = torch.randn(400, P, generator=g, dtype=torch.float64)  # seeded: not the global RNG, which other tests move
    x = (b.double() + z @ torch.linalg.cholesky(exact.covariance_matrix.double()).T).float().view(-1, 1, 1, P)
    return model, x, -exact.log_prob(x.flatten(1)).double()


def test_iwae_approaches_the_exact_nll_from_above(linear_gaussian):
    model, x, exact_nll = linear_gaussian
    gaps = {}
    for k in (1, 10, 100, 3000):
        nll = iwae_nll(model, x, k, torch.Generator().manual_seed(k), chunk=2000)
        assert nll.dtype == torch.float64 and nll.shape == (len(x),)
        gaps[k] = (nll - exact_nll).mean().item()
    # Monte-Carlo noise: the importance weights have relative variance ~0.5 here, so -log of their mean over k
    # samples has a standard deviation of about sqrt(0.5 / k) per image (0.013 at k = 3000).
    assert gaps[1] > 0.3  # the sloppy encoder leaves a real gap at k = 1 ...
    assert gaps[1] > gaps[10] > gaps[100] > -0.005  # ... which closes as k grows, from above
    assert abs(gaps[3000]) < 0.005
    assert (nll - exact_nll).min() > -0.06  # at k = 3000: not below the exact value by more than MC noise, per image


def test_k1_is_minus_elbo(linear_gaussian):
    """With one sample the IWAE bound is an unbiased estimate of -ELBO, known here in closed form."""
    model, x, _ = linear_gaussian
    x, n = x[:10], 20_000
    mean, log_var = model.encoder(x)
    w, b = model.decoder.w, model.decoder.b
    residual = ((x.flatten(1) - mean @ w.T - b) ** 2).sum(1) + (w**2 @ log_var.exp().T).sum(0)  # E_q ||x - Wz - b||^2
    recon_ll = -0.5 * P * math.log(2 * math.pi * SIGMA**2) - residual / (2 * SIGMA**2)
    neg_elbo = -(recon_ll - model.prior.kl(mean, log_var, None).sum(1)).double()
    samples = iwae_nll(model, x.repeat(n, 1, 1, 1), 1, torch.Generator().manual_seed(0)).view(n, -1)
    error = samples.mean(0) - neg_elbo
    assert (error.abs() < 4 * samples.std(0) / math.sqrt(n)).all(), error


def test_chunking_does_not_change_the_estimate(linear_gaussian):
    model, x, exact_nll = linear_gaussian
    x, exact_nll = x[:50], exact_nll[:50]
    one_pass = iwae_nll(model, x, 2000, torch.Generator().manual_seed(1), chunk=10**6)
    many = iwae_nll(model, x, 2000, torch.Generator().manual_seed(2), chunk=7)  # 2000 passes of one sample each
    for nll in (one_pass, many):  # each image's own estimate (per-image noise ~0.016 at k = 2000)
        assert (nll - exact_nll).abs().max() < 0.1


@pytest.mark.parametrize("prior", options("prior"))
def test_iwae_is_below_minus_elbo_on_average(prior):
    cfg = compose_config([*TINY, f"prior={prior}"])
    data = build("dataset", cfg.dataset)
    torch.manual_seed(0)
    model = build_model(cfg, data)
    figures = measure(model, data, "val", 64, 32, iwae_k=20)
    assert figures["iwae_k"] == 20
    assert figures["iwae_nll"] <= -figures["elbo"]
