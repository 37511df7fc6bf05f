"""Priors p(z) and the KL(q(z|x) || p(z)) term."""
import math

import torch
from torch import nn

from vae_lab.checks import positive_int

MC_KL_NOTE = ("KL(q(z|x) || p(z)) has no closed form for this prior: kl is the single-sample Monte-Carlo estimate "
              "log q(z|x) - log p(z) at the z used for the reconstruction (unbiased, noisy per image, one total per image)")


class Prior(nn.Module):
    """Base of the `prior` group. Built as `Prior(latent_dim=D, in_shape=(C, H, W), **config)`.

    `kl(mean, log_var, z)` returns the KL term per image, split over latent dimensions where it
    factorises: (B, D). A prior whose KL has no closed form can return the single-sample Monte-Carlo
    estimate log q(z|x) - log p(z) at the z used for the reconstruction, as (B, 1); that is the default.
    """

    analytic_kl = False
    # log_prob_per_dim(z) -> (B, D), log p(z_j) per dimension, is defined by a factorised prior, p(z) = prod_j p(z_j):
    # the KL decomposition's dimension-wise term and the β-TCVAE's are taken against it. None where p(z) does not
    # factorise (mixtures, VampPrior).
    log_prob_per_dim = None

    def __init__(self, latent_dim, in_shape=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.in_shape = None if in_shape is None else tuple(in_shape)

    def bind_encoder(self, encoder):
        """The VAE hands over its encoder; priors defined through it (VampPrior) keep it, the others ignore it."""

    def log_prob(self, z):
        """log p(z), (B,), for codes z (B, D)."""
        raise NotImplementedError

    def sample(self, n, generator):
        """n codes from p(z), (n, D), on the generator's device."""
        raise NotImplementedError

    def kl(self, mean, log_var, z):
        log_q = normal_log_prob(z, mean, log_var).sum(1)
        return (log_q - self.log_prob(z)).unsqueeze(1)

    @property
    def factorised(self):
        return self.log_prob_per_dim is not None


def normal_log_prob(z, mean, log_var):
    """log N(z; mean, exp(log_var)) per dimension, same shape as z."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 / log_var.exp())


def standard_normal_log_prob(z):
    """log N(z_j; 0, 1) per dimension, same shape as z."""
    return -0.5 * (math.log(2 * math.pi) + z * z)


def mixture_log_prob(z, means, log_vars, log_weights):
    """log sum_k w_k N(z; m_k, diag exp(v_k)), (B,), for z (B, D) and K diagonal components (K, D), weights (K,).

    sum_d (z_d - m_kd)^2 / s_kd = z^2 . (1/s_k) - 2 z . (m_k/s_k) + sum_d m_kd^2 / s_kd: two (B, D) x (D, K) matrix
    products instead of a (B, K, D) tensor, which made IWAE with a VampPrior (k = 5000 codes per image, K = 500)
    memory-bound. In float64, because the three terms are large and cancel where a component fits z, which is where
    the mixture's mass is.
    """
    z64, m64, v64 = z.double(), means.double(), log_vars.double()
    precision = (-v64).exp()  # (K, D)
    quad = (z64 * z64) @ precision.T - 2 * z64 @ (m64 * precision).T + (m64 * m64 * precision).sum(1)  # (B, K)
    per_component = -0.5 * (z.shape[1] * math.log(2 * math.pi) + v64.sum(1) + quad)
    return torch.logsumexp(per_component + log_weights.double(), dim=1).to(z.dtype)


def mixture_sample(n, means, log_vars, weights, generator):
    k = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,) component of each code
    eps = torch.randn(n, means.shape[1], generator=generator, device=generator.device, dtype=means.dtype)
    return means[k] + (0.5 * log_vars[k]).exp() * eps


class StandardNormal(Prior):
    """p(z) = N(0, I), with the analytic KL."""

    analytic_kl = True

    def log_prob_per_dim(self, z):
        return standard_normal_log_prob(z)

    def log_prob(self, z):
        return standard_normal_log_prob(z).sum(1)

    def sample(self, n, generator):
        return torch.randn(n, self.latent_dim, generator=generator, device=generator.device)

    def kl(self, mean, log_var, z):
        # Kingma & Welling 2014, Appendix B: KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)
        return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var)


class MixtureOfGaussians(Prior):
    """p(z) = sum_k pi_k N(z; m_k, diag s_k^2), K learnable diagonal Gaussians and weights; Monte-Carlo KL."""

    def __init__(self, latent_dim, in_shape=None, components=10):
        super().__init__(latent_dim, in_shape)
        k = positive_int("components", components)
        self.means = nn.Parameter(torch.randn(k, latent_dim))  # spread like N(0, I) at the start
        self.log_vars = nn.Parameter(torch.zeros(k, latent_dim))
        self.logits = nn.Parameter(torch.zeros(k))

    def log_prob(self, z):
        return mixture_log_prob(z, self.means, self.log_vars, self.logits.log_softmax(0))

    def sample(self, n, generator):
        return mixture_sample(n, self.means, self.log_vars, self.logits.softmax(0), generator)


class VampPrior(Prior):
    """VampPrior (Tomczak & Welling 2018, eq. 9): p(z) = 1/K sum_k q(z | u_k), K learnable pseudo-inputs u_k
    passed through the VAE's own encoder; Monte-Carlo KL."""

    def __init__(self, latent_dim, in_shape, components=500, init_mean=0.05, init_std=0.01):
        super().__init__(latent_dim, in_shape)
        k = positive_int("components", components)
        # N(init_mean, init_std), then hard-tanh into the data range [0, 1] in components(), as Tomczak & Welling's
        # code does (configs/prior/vamp.yaml: why 0.05 and not their experiment.py's -0.05)
        self.pseudo_inputs = nn.Parameter(init_mean + init_std * torch.randn(k, *self.in_shape))
        self._encoder = ()

    def bind_encoder(self, encoder):
        self._encoder = (encoder,)  # a tuple, not a submodule: its weights stay once in the state dict, under `encoder.`

    def components(self):
        """Means and log-variances (K, D) of q(z | u_k)."""
        if not self._encoder:
            raise RuntimeError("VampPrior needs the encoder: build it inside a VAE (VAE.__init__ binds it)")
        u = nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)  # (K, C, H, W)
        mean, log_var = self._encoder[0](u)
        return mean.float(), log_var.float()

    def log_prob(self, z):
        mean, log_var = self.components()
        log_w = torch.full((mean.shape[0],), -math.log(mean.shape[0]), device=z.device)
        return mixture_log_prob(z, mean, log_var, log_w)

    def sample(self, n, generator):
        mean, log_var = self.components()
        weights = torch.ones(mean.shape[0], device=mean.device)
        return mixture_sample(n, mean, log_var, weights, generator)
