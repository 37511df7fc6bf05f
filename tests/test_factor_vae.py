"""FactorVAE's penalty (Kim & Mnih 2018): its total-correlation estimate against the closed form of a Gaussian,
its discriminator trained apart from the VAE, and γ = 0 as the KL penalty."""
import io
import math

import pytest
import torch
from torch import nn

from vae_lab.model import Terms, objective
from vae_lab.penalties import KL, FactorVAE, permute_dims

RHO = 0.8
COV = torch.tensor([[1.0, RHO], [RHO, 1.0]])
TC = -0.5 * math.log(1 - RHO**2)  # TC of N(0, COV): KL(N(0, COV) || N(0, I)) with unit marginals = -½ log det COV


def correlated(n, generator):
    """n codes from N(0, COV)."""
    return torch.randn(n, 2, generator=generator) @ torch.linalg.cholesky(COV).T


class DensityRatio(nn.Module):
    """The optimal discriminator for q(z) = N(0, COV) against the product of its marginals: its logits are the two
    log densities, so that D(z) = q(z) / (q(z) + q̄(z)) exactly."""

    def forward(self, z):
        joint = torch.distributions.MultivariateNormal(torch.zeros(2), COV).log_prob(z)
        marginals = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
        return torch.stack([joint, marginals], 1)


def terms_for(z, kl=None):
    kl = torch.zeros(len(z), z.shape[1]) if kl is None else kl
    return Terms(torch.zeros(len(z)), kl, z, torch.zeros_like(z), torch.zeros(len(z), 1, 1, 1), z)


def test_the_exact_density_ratio_gives_the_gaussians_total_correlation():
    penalty = FactorVAE(gamma=1.0, depth=1, width=4, latent_dim=2)
    penalty.discriminator = DensityRatio()
    z = correlated(200_000, torch.Generator().manual_seed(0))
    # The Monte Carlo mean of log q(z)/q̄(z) over 200,000 draws: standard error about 0.003 nats here
    assert penalty.total_correlation(z).item() == pytest.approx(TC, abs=0.015)


def test_a_trained_discriminator_approaches_the_total_correlation():
    """A small discriminator trained by update() on correlated codes, as the loop would, estimates their TC."""
    torch.manual_seed(0)
    penalty = FactorVAE(gamma=1.0, depth=2, width=64, latent_dim=2, lr=3e-3)
    g, draws = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    for step in range(600):
        figures = penalty.update(terms_for(correlated(256, draws)), step, g)
    assert 0.5 < figures["discriminator_accuracy"] < 0.8  # the two classes overlap: it cannot be certain
    estimate = penalty.total_correlation(correlated(50_000, draws)).item()
    assert estimate == pytest.approx(TC, abs=0.12), (estimate, TC)


def test_gamma_zero_is_the_kl_penalty():
    z = torch.randn(16, 3, requires_grad=True)
    kl = torch.rand(16, 3)
    terms = terms_for(z, kl)
    loss, _ = objective(terms, FactorVAE(gamma=0.0, depth=2, width=8, latent_dim=3), 2.5, 0)
    assert torch.equal(loss, objective(terms, KL(), 2.5, 0)[0])


def test_the_vae_gradient_never_reaches_the_discriminator_and_its_step_never_touches_the_vae():
    torch.manual_seed(0)
    encoder = nn.Linear(5, 3)
    penalty = FactorVAE(gamma=10.0, depth=2, width=8, latent_dim=3)
    z = encoder(torch.randn(32, 5))
    loss, parts = objective(terms_for(z), penalty, 1.0, 0)
    loss.backward()
    assert parts["gamma_tc"].requires_grad and encoder.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in penalty.discriminator.parameters())
    before = [p.detach().clone() for p in (*encoder.parameters(), *penalty.discriminator.parameters())]
    grad = encoder.weight.grad.clone()
    penalty.update(terms_for(z), 0, torch.Generator().manual_seed(0))
    assert torch.equal(encoder.weight.grad, grad)  # the VAE's gradient, as backward left it
    after = [p.detach() for p in (*encoder.parameters(), *penalty.discriminator.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(before[:2], after[:2]))  # the encoder: untouched
    assert not all(torch.equal(a, b) for a, b in zip(before[2:], after[2:]))  # the discriminator: one step on


def test_state_dict_carries_the_discriminator_and_its_optimiser():
    torch.manual_seed(0)
    a = FactorVAE(depth=2, width=8, latent_dim=3)
    z = torch.randn(32, 3)
    for step in range(3):
        a.update(terms_for(z), step, torch.Generator().manual_seed(step))
    torch.manual_seed(1)
    b = FactorVAE(depth=2, width=8, latent_dim=3)
    saved = io.BytesIO()  # through a file, as a checkpoint goes: no tensor shared with `a`
    torch.save(a.state_dict(), saved)
    b.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    for p in (a, b):
        p.update(terms_for(z), 3, torch.Generator().manual_seed(3))
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)  # Adam's moments came too: the same step from the same state


def test_permute_dims_permutes_each_dimension_on_its_own():
    z = torch.arange(200.0).reshape(100, 2)
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(2):
        assert torch.equal(p[:, j].sort().values, z[:, j])
    assert not torch.equal(p[:, 0].argsort(), p[:, 1].argsort())  # each column its own order


@pytest.mark.parametrize("key,value,message", [
    ("gamma", -1.0, "gamma=-1.0"), ("depth", 0, "depth=0"), ("betas", [0.5], "betas="), ("latent_dim", None, "latent_dim=None")])
def test_bad_values_are_one_line(key, value, message):
    from vae_lab.checks import ConfigError

    kwargs = {"depth": 1, "width": 4, "latent_dim": 2, key: value}
    with pytest.raises(ConfigError, match=message):
        FactorVAE(**kwargs)
