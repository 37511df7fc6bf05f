"""Priors p(z) and the KL(q(z|x) || p(z)) term."""
import math

import torch
from torch import nn


class Prior(nn.Module):
    """Base of the `prior` group. Built as `Prior(latent_dim=D, **config)`.

    `kl(mean, log_var, z)` returns the KL term per image, split over latent dimensions where it
    factorises: (B, D). A prior whose KL has no closed form can return the single-sample Monte-Carlo
    estimate log q(z|x) - log p(z) at the z used for the reconstruction, as (B, 1); that is the default.
    """

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z):
        raise NotImplementedError

    def sample(self, n, generator):
        """n codes from p(z), (n, D), on the generator's device."""
        raise NotImplementedError

    def kl(self, mean, log_var, z):
        log_q = _normal_log_prob(z, mean, log_var).sum(1)
        return (log_q - self.log_prob(z)).unsqueeze(1)


def _normal_log_prob(z, mean, log_var):
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 / log_var.exp())


class StandardNormal(Prior):
    """p(z) = N(0, I), with the analytic KL."""

    def log_prob(self, z):
        return _normal_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)

    def sample(self, n, generator):
        return torch.randn(n, self.latent_dim, generator=generator, device=generator.device)

    def kl(self, mean, log_var, z):
        # Kingma & Welling 2014, Appendix B: KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)
        return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var)
