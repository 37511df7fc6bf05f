"""Bits/dim only where they are a code length; uniform dequantisation; the discretised logistic's probabilities."""
import math

import pytest
import torch
from helpers import compose_config

from vae_lab.checks import ConfigError
from vae_lab.codelength import DENSITY, PROBABILITY, UNNORMALISED
from vae_lab.data.base import TensorImageData
from vae_lab.likelihoods import (
    Bernoulli,
    ContinuousBernoulli,
    DiscretizedLogistic,
    DiscretizedLogisticDistribution,
    Gaussian,
    Laplace,
)
from vae_lab.measure.elbo import bits_per_dim
from vae_lab.runtime.build import build

SHAPE = (1, 3, 4)
D = 12  # channels * height * width
LEVELS = torch.arange(256, dtype=torch.float64) / 255


def _data(**options):
    """TensorImageData of random 8-bit images (8 per split) with the corner pixels 0 and 255."""
    g = torch.Generator().manual_seed(0)
    images = {}
    for split in ("train", "val", "test"):
        x = torch.randint(0, 256, (8, *SHAPE), generator=g, dtype=torch.uint8)
        x[:, 0, 0, 0], x[:, 0, -1, -1] = 0, 255
        images[split] = x
    return TensorImageData(images, **options)


def _all_levels_log_prob(loc, scale):
    """(256, *loc.shape) log P(k/255) for every level k."""
    return DiscretizedLogisticDistribution(loc, scale).log_prob(LEVELS.to(loc.dtype).view(-1, *[1] * loc.ndim))


# --- the discretised logistic (Salimans et al. 2017, eq. 2) -------------------------------------------------------

LOCS = torch.tensor([-1e3, -3.0, -0.2, 0.0, 1e-3, 0.5, 0.7 / 255, 1.0, 1.3, 40.0, 1e4], dtype=torch.float64)
SCALES = torch.tensor([1e-6, 1e-4, 1 / 255, 0.01, 0.1, 1.0, 30.0, 1e5], dtype=torch.float64)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_discretized_logistic_sums_to_one_over_the_256_levels(dtype, tol):
    loc, scale = (t.to(dtype) for t in torch.meshgrid(LOCS, SCALES, indexing="ij"))
    log_p = _all_levels_log_prob(loc, scale)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    total = log_p.double().logsumexp(0).exp()
    assert (total - 1).abs().max() < tol


def test_discretized_logistic_matches_cdf_differences():
    """Against P(k) = F(k/255 + h) - F(k/255 - h) with F(-inf) = 0 at k = 0 and F(+inf) = 1 at k = 255, in float64,
    where that difference is accurate (both CDFs away from 1, or the mass not tiny)."""
    loc, scale = torch.meshgrid(torch.linspace(-0.5, 1.5, 21, dtype=torch.float64),
                                torch.tensor([0.002, 0.02, 0.3, 5.0], dtype=torch.float64), indexing="ij")
    h = 0.5 / 255
    upper = torch.sigmoid((LEVELS[:, None, None] + h - loc) / scale)
    lower = torch.sigmoid((LEVELS[:, None, None] - h - loc) / scale)
    upper[-1], lower[0] = 1.0, 0.0
    direct = upper - lower
    got = _all_levels_log_prob(loc, scale).exp()
    torch.testing.assert_close(got, direct, rtol=1e-9, atol=1e-14)


def test_discretized_logistic_float32_agrees_with_float64_where_differences_underflow():
    """Far tails (P down to e^-1e5) and very narrow scales: the log-space form keeps float32 finite and accurate."""
    loc, scale = torch.meshgrid(LOCS, SCALES, indexing="ij")
    exact = _all_levels_log_prob(loc, scale)
    got = _all_levels_log_prob(loc.float(), scale.float()).double()
    assert torch.isfinite(got).all()
    # float32 rounds a level's edge by up to 3e-8, which is 0.03 in (edge - loc)/s at s = 1e-6: relative, not absolute
    assert ((got - exact).abs() <= 1e-4 + 1e-4 * exact.abs()).all()


def test_discretized_logistic_gradients_are_finite_and_correct():
    lik = DiscretizedLogistic(SHAPE, sigma=0.05, learn_sigma="pixel")
    x = torch.randint(0, 256, (4, *SHAPE)).float() / 255
    x[0] = 0.0
    x[1] = 1.0
    loc = torch.tensor([-1e3, -1.0, 0.3, 1e3]).view(4, 1, 1, 1).expand(4, *SHAPE).clone().requires_grad_()
    with torch.no_grad():
        lik.log_sigma[0, 0] = -12.0  # s = 6e-6, far below a level's width
        lik.log_sigma[0, 1] = 9.0  # s = 8e3, all levels nearly equally likely
    lik.log_prob(x, loc).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(lik.log_sigma.grad).all()
    loc64 = (torch.rand(2, *SHAPE, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    log_s = torch.full(SHAPE, -3.0, dtype=torch.float64).requires_grad_()
    x64 = x[:2].double()
    assert torch.autograd.gradcheck(
        lambda m, s: DiscretizedLogisticDistribution(m, s.exp()).log_prob(x64), (loc64, log_s))


def test_discretized_logistic_on_binary_data_normalises_and_sums_over_pixels():
    """Binarised pixels are the levels 0 and 255: the first and last level, each with its tail."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(5, *SHAPE, generator=g) > 0.5).float()
    loc = torch.randn(5, *SHAPE, generator=g)
    lik = DiscretizedLogistic(SHAPE, sigma=0.2, learn_sigma="scalar")
    scale = torch.full_like(loc, 0.2)
    expected_pixels = torch.where(x == 0, torch.sigmoid((0.5 / 255 - loc) / scale).log(),
                                  torch.sigmoid((loc - 1 + 0.5 / 255) / scale).log())
    torch.testing.assert_close(lik.log_prob(x, loc), expected_pixels.sum((1, 2, 3)))
    total = _all_levels_log_prob(loc.double(), scale.double()).logsumexp(0).exp()
    torch.testing.assert_close(total, torch.ones_like(total))


def test_discretized_logistic_mean_and_samples():
    loc = torch.tensor([-0.3, 0.0, 0.2, 0.5, 0.97, 1.4], dtype=torch.float64)
    scale = torch.tensor([0.1, 0.05, 0.01, 0.3, 0.02, 0.2], dtype=torch.float64)
    dist = DiscretizedLogisticDistribution(loc, scale)
    exact = (_all_levels_log_prob(loc, scale).exp() * LEVELS[:, None]).sum(0)
    torch.testing.assert_close(dist.mean, exact, rtol=1e-10, atol=1e-12)
    torch.manual_seed(0)
    samples = dist.sample((20000,))
    assert ((samples * 255).round() == samples * 255).all() and samples.min() >= 0 and samples.max() <= 1
    assert (samples.mean(0) - exact).abs().max() < 0.01


# --- uniform dequantisation (Theis et al. 2016) ------------------------------------------------------------------

def test_dequantised_batches_are_fresh_seeded_and_unbiased():
    data = _data(dequantize="uniform")
    index = torch.arange(8)
    x = data._images["test"][index].double()

    def draw(seed):
        return data.batch("test", index, torch.Generator().manual_seed(seed))

    y = draw(1)
    assert y.dtype == torch.float32 and 0 <= y.min() and y.max() < 1
    assert torch.equal(y, draw(1)) and not torch.equal(y, draw(2))
    assert ((y.double() * 256).floor() == x).all()  # each value stays in its own cell [x/256, (x+1)/256)
    g = torch.Generator().manual_seed(5)
    mean = sum(data.batch("test", index, g).double() for _ in range(4000)) / 4000
    assert (mean - (x + 0.5) / 256).abs().max() < 1e-4  # 5.6 standard errors of (1/256)/sqrt(12 * 4000)


def test_dequantised_top_level_stays_below_one():
    data = _data(dequantize="uniform")
    data._images["test"][:] = 255
    g = torch.Generator().manual_seed(0)
    assert max(data.batch("test", torch.arange(8), g).max().item() for _ in range(200)) < 1


def test_dequantize_with_binarize_is_a_config_error(idx_data_dir):
    with pytest.raises(ConfigError, match="dequantize=uniform"):
        _data(dequantize="uniform", binarize="dynamic")
    cfg = compose_config(["dataset=mnist", f"data_dir={idx_data_dir}", "dataset.val_size=100",
                          "dataset.dequantize=uniform", "dataset.binarize=static"])
    with pytest.raises(ConfigError, match=r"^dataset\.dequantize=uniform: .*binarize=none"):
        build("dataset", cfg.dataset)
    with pytest.raises(ConfigError, match="dequantize='gaussian'"):
        _data(dequantize="gaussian")


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_datasets_take_dequantize_from_their_config(dataset, idx_data_dir):
    cfg = compose_config([f"dataset={dataset}", f"data_dir={idx_data_dir}", "dataset.val_size=100",
                          "dataset.dequantize=uniform"])
    data = build("dataset", cfg.dataset)
    x = data.batch("train", torch.arange(16), torch.Generator().manual_seed(0))
    assert data.dequantize == "uniform" and not data.binary and 0 <= x.min() and x.max() < 1
    assert (x * 255 != (x * 255).round()).any()


# --- bits per dimension ----------------------------------------------------------------------------------------

def _cell_mass_gaussian(x, mu, sigma):
    """log P(x) = sum over pixels of log ∫ N(y; mu, sigma) dy over the cell [x/256, (x+1)/256), float64."""
    normal = torch.distributions.Normal(mu, sigma)
    return (normal.cdf((x + 1) / 256) - normal.cdf(x / 256)).log().flatten(1).sum(1)


def test_gaussian_on_dequantised_data_bounds_the_discrete_code_length():
    """(-E_u log p(y) + D log 256) / (D ln 2) >= -log2 P(x) / D, P(x) the Gaussian's mass on x's cell (Jensen)."""
    data = _data(dequantize="uniform")
    x = data._images["test"].double()
    mu = ((x + 0.5) / 256 + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    sigma = 0.01
    lik = Gaussian(SHAPE, sigma=sigma)
    # E_u[log N(y; mu, sigma)] in closed form: E[(y - mu)^2] = ((x + 0.5)/256 - mu)^2 + 1 / (12 * 256^2)
    sq = ((x + 0.5) / 256 - mu) ** 2 + 1 / (12 * 256**2)
    expected_log_p = (-0.5 * math.log(2 * math.pi * sigma**2) - sq / (2 * sigma**2)).flatten(1).sum(1)  # (8,)
    g = torch.Generator().manual_seed(2)
    draws = [lik.log_prob(data.batch("test", torch.arange(8), g), mu.float()).double() for _ in range(2000)]
    torch.testing.assert_close(sum(draws) / len(draws), expected_log_p, rtol=0, atol=0.05)  # the batches' u

    value, reason = bits_per_dim(expected_log_p.mean().item(), lik, data)  # the ELBO of an exact posterior
    code = -_cell_mass_gaussian(x, mu, sigma).mean().item() / (D * math.log(2))
    assert math.isfinite(value) and value > 0 and "dequantised" in reason
    assert value >= code > 0
    assert value == pytest.approx(-expected_log_p.mean().item() / (D * math.log(2)) + 8)  # + log2(256)


@pytest.mark.parametrize("cls", [Gaussian, Laplace, ContinuousBernoulli])
def test_densities_without_dequantisation_give_no_bits_per_dim(cls):
    lik = cls(SHAPE)
    assert lik.log_prob_kind(_data())[0] == DENSITY
    value, reason = bits_per_dim(100.0, lik, _data())
    assert value is None and reason == (f"{cls.__name__} on grey levels without dequantisation is a density, "
                                        "not a code length: train with dataset.dequantize=uniform")
    value, reason = bits_per_dim(100.0, lik, _data(binarize="dynamic"))
    assert value is None and "binary pixels is a density" in reason
    assert bits_per_dim(-100.0, lik, _data(dequantize="uniform")).value == pytest.approx(100 / (D * math.log(2)) + 8)


@pytest.mark.parametrize("options", [{}, {"dequantize": "uniform"}])
def test_bernoulli_on_grey_levels_gives_no_bits_per_dim(options):
    data = _data(**options)
    assert Bernoulli(SHAPE).log_prob_kind(data)[0] == UNNORMALISED
    value, reason = bits_per_dim(-50.0, Bernoulli(SHAPE), data)
    assert value is None and "not a normalised likelihood" in reason and "binarize" in reason


@pytest.mark.parametrize("binarize", ["static", "dynamic"])
def test_bernoulli_on_binarised_pixels_is_a_code_length(binarize):
    data = _data(binarize=binarize)
    assert data.binary and Bernoulli(SHAPE).log_prob_kind(data)[0] == PROBABILITY
    value, reason = bits_per_dim(-5.0, Bernoulli(SHAPE), data)
    assert value == pytest.approx(5.0 / (D * math.log(2))) and "code length" in reason


def test_discretized_logistic_is_a_code_length_and_refuses_dequantised_data():
    lik = DiscretizedLogistic(SHAPE)
    for data in (_data(), _data(binarize="static")):
        lik.check_dataset(data)
        assert bits_per_dim(-30.0, lik, data).value == pytest.approx(30.0 / (D * math.log(2)))
    with pytest.raises(ConfigError, match="^likelihood: DiscretizedLogistic .* set dataset.dequantize=none$"):
        lik.check_dataset(_data(dequantize="uniform"))
    # its ELBO with an exact, deterministic code is log P(x) <= 0: bits/dim >= 0
    data = _data()
    x = data.batch("test", torch.arange(8))
    log_p = lik.log_prob(x, x)  # location on the level itself
    assert (log_p <= 0).all() and bits_per_dim(log_p.mean().item(), lik, data).value >= 0
