"""The ELBO's pieces against torch.distributions and closed forms."""
import math

import pytest
import torch
from torch import distributions as D

from vae_lab import kl_schedules as S
from vae_lab import penalties as P
from vae_lab.checks import ConfigError
from vae_lab.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian, Laplace
from vae_lab.model import VAE, Terms, objective
from vae_lab.priors import Prior, StandardNormal

SHAPE = (1, 5, 7)


def _data(binary=False):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *SHAPE, generator=g)
    return (x > 0.5).float() if binary else x, torch.randn(6, *SHAPE, generator=g) * 2


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_sums_torch_log_prob_over_pixels(binary):
    x, logits = _data(binary)
    expected = D.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(Bernoulli(SHAPE).log_prob(x, logits), expected)
    assert Bernoulli(SHAPE).log_prob(x, logits).shape == (6,)


def test_bernoulli_log_prob_matches_float64_and_its_gradient():
    """Bernoulli.log_prob (torch's fused kernel) against torch.distributions in float64, over logits from -1e4 to 1e4,
    and its gradient against the float64 one."""
    g = torch.Generator().manual_seed(1)
    logits = torch.cat([torch.randn(2000, generator=g) * 10, torch.tensor([-1e4, -90.0, -20.0, -1e-7, 0.0, 1e-7, 20.0, 90.0, 1e4])])
    for x in (torch.rand(logits.shape, generator=g), torch.zeros_like(logits), torch.ones_like(logits)):
        exact = D.Bernoulli(logits=logits.double(), validate_args=False).log_prob(x.double())
        got = Bernoulli((1,)).log_prob(x[:, None], logits[:, None].requires_grad_()).double()
        assert ((got - exact).abs() <= 1e-6 + 2e-7 * exact.abs()).all()  # float32 rounding of x * l, no more
    l64 = (torch.randn(3, 4, generator=g, dtype=torch.double) * 4).requires_grad_()
    x64 = torch.rand(3, 4, generator=g, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda lg: Bernoulli((4,)).log_prob(x64, lg), (l64,))


def test_continuous_bernoulli_sums_torch_log_prob():
    x, logits = _data()
    expected = D.ContinuousBernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(ContinuousBernoulli(SHAPE).log_prob(x, logits), expected)


@pytest.mark.parametrize("cls,family", [(Gaussian, D.Normal), (Laplace, D.Laplace)])
@pytest.mark.parametrize("learn", ["none", "scalar", "pixel"])
def test_location_scale_sums_torch_log_prob(cls, family, learn):
    x, loc = _data()
    lik = cls(SHAPE, sigma=0.3, learn_sigma=learn)
    expected = family(loc, torch.full_like(loc, 0.3)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x, loc), expected)
    assert len(list(lik.parameters())) == (0 if learn == "none" else 1)
    if learn == "pixel":
        assert lik.log_sigma.shape == SHAPE


def test_gaussian_closed_form():
    x, mu = _data()
    s = 0.2
    closed = (-0.5 * ((x - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    torch.testing.assert_close(Gaussian(SHAPE, sigma=s).log_prob(x, mu), closed)


def test_normal_kl_matches_torch_kl_divergence():
    g = torch.Generator().manual_seed(1)
    mean, log_var = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    expected = D.kl_divergence(D.Normal(mean, (0.5 * log_var).exp()), D.Normal(0.0, 1.0))
    kl = StandardNormal(3).kl(mean, log_var, z=None)
    torch.testing.assert_close(kl, expected)
    assert kl.shape == (5, 3)


def test_monte_carlo_kl_of_base_prior_is_unbiased():
    """The base class's single-sample KL, averaged over many z, approaches the analytic value."""

    class MCNormal(Prior):
        def log_prob(self, z):
            return D.Normal(0.0, 1.0).log_prob(z).sum(1)

    mean, log_var = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.3]])
    z = mean + (0.5 * log_var).exp() * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    mc = MCNormal(2).kl(mean.expand_as(z), log_var.expand_as(z), z)
    assert mc.shape == (200_000, 1)
    analytic = StandardNormal(2).kl(mean, log_var, None).sum()
    assert abs(mc.mean() - analytic) < 0.02


def test_elbo_is_recon_minus_kl_and_objective_weights_only_the_kl():
    class Enc(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :2], torch.zeros(x.shape[0], 2)

    class Dec(torch.nn.Module):
        def forward(self, z):
            return z.sum(1).view(-1, 1, 1, 1).expand(-1, *SHAPE)

    vae = VAE(Enc(), Dec(), Bernoulli(SHAPE), StandardNormal(2))
    x, _ = _data(binary=True)
    terms = vae(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.elbo, terms.recon_ll - terms.kl.sum(1))
    for beta in (0.0, 1.0, 4.0):
        loss, parts = objective(terms, P.KL(), S.Constant(beta=beta).weight(0), step=0)
        torch.testing.assert_close(loss, -(terms.recon_ll - beta * terms.kl.sum(1)).mean())
        torch.testing.assert_close(parts["kl_penalty"], beta * terms.kl.sum(1).mean())
    # reduction=mean: log p(x|z) divided by the pixel count
    loss, _ = objective(terms, P.KL(), 1.0, step=0, recon_scale=1 / 35)
    torch.testing.assert_close(loss, (-terms.recon_ll / 35 + terms.kl.sum(1)).mean())


def test_constant_and_linear_schedules():
    assert S.Constant(beta=4).weight(0) == S.Constant(beta=4).weight(10**6) == 4
    lin = S.Linear(beta=2.0, start=0.0, warmup_steps=100)
    assert [lin.weight(s) for s in (0, 25, 50, 100, 101, 10**6)] == [0.0, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert S.Linear(beta=1.0, start=0.5, warmup_steps=10).weight(5) == 0.75


def test_cyclical_schedule_at_cycle_boundaries():
    cyc = S.Cyclical(beta=1.0, n_cycles=4, ratio=0.5, total_steps=400)  # cycles of 100 steps
    expected = {0: 0.0, 25: 0.5, 49: 0.98, 50: 1.0, 99: 1.0, 100: 0.0, 125: 0.5, 150: 1.0, 399: 1.0}
    for step, w in expected.items():
        assert cyc.weight(step) == pytest.approx(w), step
    assert S.Cyclical(beta=3.0, n_cycles=1, ratio=1.0, total_steps=10).weight(5) == pytest.approx(1.5)


def _terms(kl, mean=None, log_var=None):
    b = kl.shape[0]
    return Terms(torch.zeros(b), kl, mean, log_var, None, None)


def test_capacity_penalty():
    cap = P.Capacity(gamma=100.0, c_max=20.0, ramp_steps=1000)
    assert [cap.capacity(s) for s in (0, 500, 1000, 5000)] == [0.0, 10.0, 20.0, 20.0]
    kl = _terms(torch.tensor([[3.0, 4.0], [5.0, 6.0]]))  # mean total KL 9
    assert cap(kl, 1.0, 500)[0].item() == pytest.approx(100.0 * abs(9 - 10))
    assert cap(kl, 1.0, 0)[0].item() == pytest.approx(900.0)
    # the schedule's weight multiplies gamma: a linear warm-up of capacity, or a kl.beta sweep over it
    assert cap(kl, 0.5, 0)[0].item() == pytest.approx(450.0)
    assert cap(kl, 1.0, 500)[1]["capacity"].item() == pytest.approx(10.0)


def test_free_bits_clamps_each_dimension_batch_mean():
    fb = P.FreeBits(free_nats=1.0)
    kl = torch.tensor([[0.2, 3.0, 1.0], [0.4, 1.0, 2.0]], requires_grad=True)  # batch means 0.3, 2.0, 1.5
    penalty, _ = fb(_terms(kl), 2.0, 0)
    assert penalty.item() == pytest.approx(2.0 * (1.0 + 2.0 + 1.5))
    penalty.backward()
    assert kl.grad[:, 0].abs().sum() == 0  # below lambda: no gradient


def test_dip_penalties_against_their_covariance():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(500, 3, generator=g) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.3]])
    log_var = torch.full((500, 3), -1.0)
    kl = torch.zeros(500, 3)
    cov = torch.cov(mean.T, correction=0)  # divided by B, as disentanglement_lib's E[mu mu^T] - E[mu] E[mu]^T
    od = (cov.pow(2).sum() - cov.diagonal().pow(2).sum()).item()
    _, one = P.DIP("i", lambda_od=2.0, lambda_d_factor=1.5)(_terms(kl, mean, log_var), 1.0, 0)
    assert one["dip_off_diagonal"].item() == pytest.approx(2.0 * od, rel=1e-5)
    assert one["dip_diagonal"].item() == pytest.approx(3.0 * (cov.diagonal() - 1).pow(2).sum().item(), rel=1e-5)
    _, two = P.DIP("ii", lambda_od=2.0, lambda_d_factor=1.5)(_terms(kl, mean, log_var), 1.0, 0)
    cov2 = cov + torch.diag(torch.full((3,), math.exp(-1.0)))  # + E[diag sigma^2]
    assert two["dip_off_diagonal"].item() == pytest.approx(2.0 * od, rel=1e-5)  # off-diagonal unchanged
    assert two["dip_diagonal"].item() == pytest.approx(3.0 * (cov2.diagonal() - 1).pow(2).sum().item(), rel=1e-5)
    # a code with the prior's covariance pays nothing
    white = torch.randn(20000, 3, generator=g)
    _, w = P.DIP("i", lambda_od=1.0, lambda_d_factor=1.0)(_terms(torch.zeros(20000, 3), white, log_var[:1].expand(20000, 3)), 1.0, 0)
    assert w["dip_off_diagonal"].item() < 0.01 and w["dip_diagonal"].item() < 0.01


def test_dip_diagonal_weight_is_a_factor_of_the_off_diagonal_one():
    """disentanglement_lib's DIPVAE: lambda_d = lambda_d_factor * lambda_od; the old absolute key is refused by name."""
    assert P.DIP("i", lambda_od=5.0, lambda_d_factor=10.0).lambda_d == 50.0
    assert P.DIP("ii", lambda_od=20.0, lambda_d_factor=1.0).lambda_d == 20.0
    with pytest.raises(ConfigError, match="lambda_d=100.0: replaced by lambda_d_factor"):
        P.DIP("i", lambda_od=10.0, lambda_d=100.0)


@pytest.mark.parametrize("cls", [S.Constant, S.Linear])
def test_every_schedule_has_beta_as_its_maximum(cls):
    s = cls(beta=3.0)
    assert s.beta == 3.0
    assert max(s.weight(t) for t in (0, 10, 10**7)) == pytest.approx(3.0)


def test_tcvae_with_unit_weights_is_the_elbo_objective_up_to_estimator_error():
    """alpha = beta = gamma = 1: MI + TC + dim-KL telescope to log q(z|x) - log p(z) at the batch's z, whatever the
    estimator of log q(z); that single-sample KL has the analytic KL as its mean."""
    g = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(256, 3, generator=g), torch.randn(256, 3, generator=g) * 0.3 - 1
    z = mean + (0.5 * log_var).exp() * torch.randn(256, 3, generator=g)
    kl = StandardNormal(3).kl(mean, log_var, z)
    terms = Terms(torch.zeros(256), kl, mean, log_var, None, z)
    single_sample = (D.Normal(mean, (0.5 * log_var).exp()).log_prob(z) - D.Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    for estimator in ("mss", "mws"):
        part, parts = P.TCVAE(alpha=1.0, gamma=1.0, estimator=estimator, dataset_size=10_000)(terms, 1.0, 0)
        torch.testing.assert_close(part, single_sample, rtol=1e-5, atol=1e-5)
        assert set(parts) == set(P.TCVAE.names)
    assert abs(single_sample - kl.sum(1).mean()) < 0.25  # Monte-Carlo error of 256 single-sample estimates
    # beta weights only the total correlation
    part4, parts4 = P.TCVAE(dataset_size=10_000)(terms, 4.0, 0)
    torch.testing.assert_close(part4 - part, 3 * parts4["beta_tc"] / 4)


def test_tcvae_analytic_is_disentanglement_libs_beta_tcvae():
    """kl_estimate=analytic with alpha = gamma = 1 and mws: the analytic KL + (beta - 1) * TC, the TC as
    disentanglement_lib's total_correlation (methods/unsupervised/vae.py) computes it, whose log-sum-exps drop the
    constant log(N M) of each density: (D - 1) log(N M) apart, the same gradient."""
    g = torch.Generator().manual_seed(1)
    m, d, n, beta = 64, 4, 10_000, 6.0
    mean = torch.randn(m, d, generator=g).requires_grad_()
    log_var = (torch.randn(m, d, generator=g) * 0.3 - 1).requires_grad_()
    eps = torch.randn(m, d, generator=g)

    def terms():
        z = mean + (0.5 * log_var).exp() * eps
        return Terms(torch.zeros(m), StandardNormal(d).kl(mean, log_var, z), mean, log_var, None, z)

    tcvae = P.TCVAE(alpha=1.0, gamma=1.0, estimator="mws", kl_estimate="analytic", dataset_size=n)
    assert tcvae.names == P.TCVAE.ANALYTIC_NAMES
    part, parts = tcvae(terms(), beta, 0)
    assert set(parts) == set(tcvae.names) and parts["alpha_minus_1_mi"] == 0 and parts["gamma_minus_1_dimwise_kl"] == 0
    t = terms()
    log_q = D.Normal(t.mean[None], (0.5 * t.log_var[None]).exp()).log_prob(t.z[:, None])  # (M, M, D): [j, i, l]
    dlib_tc = (torch.logsumexp(log_q.sum(2), 1) - torch.logsumexp(log_q, 1).sum(1)).mean()
    analytic_kl = (0.5 * (t.mean**2 + t.log_var.exp() - t.log_var - 1).sum(1)).mean()
    dlib = analytic_kl + (beta - 1) * dlib_tc
    torch.testing.assert_close(part, dlib + (beta - 1) * (d - 1) * math.log(n * m))
    ours = torch.autograd.grad(part, (mean, log_var))
    theirs = torch.autograd.grad(dlib, (mean, log_var))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the same objective as the three estimates: they differ by the analytic KL minus its single-sample estimate
    sampled, _ = P.TCVAE(alpha=1.0, gamma=1.0, estimator="mws", dataset_size=n)(t, beta, 0)
    single = (D.Normal(t.mean, (0.5 * t.log_var).exp()).log_prob(t.z) - D.Normal(0.0, 1.0).log_prob(t.z)).sum(1).mean()
    torch.testing.assert_close(part - sampled, analytic_kl - single, rtol=1e-4, atol=1e-4)


def test_burda_learning_rate_schedule_in_epochs():
    """Burda et al. 2016: 3^i epochs at 0.001 * 10^(-i/7), i = 0..7, then the last rate."""
    from vae_lab.schedulers import EpochPhases

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = EpochPhases(opt, steps_per_epoch=10)
    start = 0
    for i in range(8):
        for epoch in (start, start + 3**i - 1):  # first and last epoch of phase i
            assert sched.factor(epoch * 10) == pytest.approx(10 ** (-i / 7)), (i, epoch)
        start += 3**i
    assert start == 3280 and sched.factor(10**9) == pytest.approx(0.1)
