"""Likelihoods p(x|z): decoder output -> torch.distributions object; log p(x|z) summed over all pixels, in nats."""
import math

import torch
from torch import distributions as D
from torch import nn

from vae_lab.checks import ConfigError, choice, number
from vae_lab.codelength import DENSITY, PROBABILITY, UNNORMALISED


class Likelihood(nn.Module):
    """Base of the `likelihood` group. Built as `Likelihood(shape=(C, H, W), **config)`.

    `distribution(params)` maps the decoder's raw output (B, C, H, W) to a distribution over pixels.
    """

    data_range = (-math.inf, math.inf)  # values of x this likelihood is defined on
    kind = DENSITY  # what log p is: a DENSITY on continuous values, or a PROBABILITY of discrete ones (codelength)

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def distribution(self, params):
        raise NotImplementedError

    def log_prob(self, x, params):
        """log p(x|z), (B,): summed over channels and pixels, in nats per image."""
        return self.distribution(params).log_prob(x).flatten(1).sum(1)

    def mean(self, params):
        """The mean image, for reconstructions and samples shown to people."""
        return self.distribution(params).mean

    def log_prob_kind(self, data):
        """(kind, reason): what log p(x|z) is on `data`'s values (vae_lab.codelength), and why, in a few words."""
        what = "a density on continuous values" if self.kind == DENSITY else "a probability of discrete values"
        return self.kind, f"{type(self).__name__} is {what}"

    def check_dataset(self, data):
        """A ConfigError when this likelihood is not defined on `data`'s values."""
        self.check_data(*data.value_range)

    def check_data(self, low, high):
        lo, hi = self.data_range
        if low < lo or high > hi:
            raise ConfigError(
                f"likelihood: {type(self).__name__} is defined on data in [{lo}, {hi}], "
                f"but the dataset's values span [{low:g}, {high:g}]"
            )


class Bernoulli(Likelihood):
    """Bernoulli(logits); on grey-level data in [0, 1] this is the usual binary cross-entropy."""

    data_range = (0.0, 1.0)
    kind = PROBABILITY  # of binary pixels; of grey levels it is UNNORMALISED (log_prob_kind)

    def log_prob_kind(self, data):
        if data.binary:
            return PROBABILITY, "Bernoulli on binary pixels is a probability"
        return UNNORMALISED, ("Bernoulli on grey levels is not a normalised likelihood of them: "
                              "set dataset.binarize=dynamic, or use likelihood=discretized_logistic")

    def distribution(self, params):
        return D.Bernoulli(logits=params, validate_args=False)

    def log_prob(self, x, params):
        # Same value as Bernoulli(logits).log_prob(x) (tests check it) without building the object each step:
        # torch's fused kernel, -softplus(-l) x - softplus(l) (1 - x) per pixel.
        return -nn.functional.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)


class ContinuousBernoulli(Likelihood):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the normalised density on [0, 1]."""

    data_range = (0.0, 1.0)

    def distribution(self, params):
        return D.ContinuousBernoulli(logits=params, validate_args=False)


class _LocationScale(Likelihood):
    """Decoder output is the location; the scale is fixed (`sigma`) or learned: one scalar or one per pixel."""

    family: type

    def __init__(self, shape, sigma=1.0, learn_sigma="none"):
        super().__init__(shape)
        sigma = number("sigma", sigma, low=0, low_open=True)
        self.learn_sigma = choice("learn_sigma", learn_sigma, ("none", "scalar", "pixel"))
        log_sigma = torch.full(self.shape if learn_sigma == "pixel" else (), math.log(sigma))
        if learn_sigma == "none":
            self.register_buffer("log_sigma", log_sigma)
        else:
            self.log_sigma = nn.Parameter(log_sigma)

    def distribution(self, params):
        return self.family(params, self.log_sigma.exp().expand_as(params), validate_args=False)


class Gaussian(_LocationScale):
    family = D.Normal


class Laplace(_LocationScale):
    family = D.Laplace


class DiscretizedLogisticDistribution(D.Distribution):
    """Logistic(loc, scale) rounded to the nearest of the levels k/255, k = 0..255: level k gets the mass of
    [k/255 - h, k/255 + h], h = 1/(2·255), except that the first level takes the left tail and the last the right."""

    arg_constraints = {"loc": D.constraints.real, "scale": D.constraints.positive}
    support = D.constraints.unit_interval  # its levels k/255
    LEVELS = 255  # the values are k / LEVELS

    def __init__(self, loc, scale, validate_args=False):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def log_prob(self, x):
        # Salimans et al. 2017, eq. 2: P(x) = σ(a) - σ(b), a = (x + h - μ)/s, b = (x - h - μ)/s, x = k/255 (a value
        # off the levels gets its nearest level's probability); σ(b) = 0 for the first level and σ(a) = 1 for the last. Their code falls back to the density at the level when σ(a) - σ(b)
        # underflows; here σ(a) - σ(b) = σ(a) σ(-b) (1 - exp(b - a)) is computed as a sum of logs, each accurate in
        # floating point for any a, b, so no fallback is needed.
        inv_scale = self.scale.reciprocal()
        k = (x * self.LEVELS).round()  # the level; its edges (k ± ½)/255 round alike for neighbouring levels
        a = ((k + 0.5) / self.LEVELS - self.loc) * inv_scale
        b = ((k - 0.5) / self.LEVELS - self.loc) * inv_scale
        log_cdf_a = nn.functional.logsigmoid(a)  # log σ(a)
        log_sf_b = nn.functional.logsigmoid(-b)  # log (1 - σ(b))
        middle = log_cdf_a + log_sf_b + _log1mexp(inv_scale / self.LEVELS)  # a - b = 2h/s, without rounding a - b
        return torch.where(k == 0, log_cdf_a, torch.where(k == self.LEVELS, log_sf_b, middle))

    @property
    def mean(self):
        # E[X] = Σ_{k=1..255} P(X >= k/255) / 255, P(X >= k/255) = σ((μ - (k - ½)/255) / s): a sum of 255 sigmoids
        total = torch.zeros_like(self.loc)
        for k in range(1, self.LEVELS + 1):
            total += torch.sigmoid((self.loc - (k - 0.5) / self.LEVELS) / self.scale)
        return total / self.LEVELS

    def sample(self, sample_shape=()):
        with torch.no_grad():
            u = torch.rand(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
            y = self.loc + self.scale * (u.log() - (-u).log1p())  # a logistic sample, by inverting its CDF
            return (y * self.LEVELS).round().clamp(0, self.LEVELS) / self.LEVELS


class DiscretizedLogistic(_LocationScale):
    """A logistic per pixel (location from the decoder, scale `sigma` fixed or learned) integrated over each of the
    256 levels k/255 of 8-bit data (Salimans et al. 2017, PixelCNN++, eq. 2, one component): a probability, so
    -ELBO / (D ln 2) is a code length. `sigma` is the logistic's scale s (standard deviation s·π/√3)."""

    data_range = (0.0, 1.0)
    kind = PROBABILITY
    family = DiscretizedLogisticDistribution

    def check_dataset(self, data):
        super().check_dataset(data)
        if data.dequantize != "none":
            raise ConfigError(f"likelihood: DiscretizedLogistic is a probability of 8-bit levels k/255, but "
                              f"dataset.dequantize={data.dequantize} makes them continuous; set dataset.dequantize=none")


def _log1mexp(w):
    """log(1 - exp(-w)) for w > 0, accurate for small and large w (Mächler 2012); both branches finite, so the
    unused one gives no NaN gradient."""
    small = w.clamp(max=math.log(2))
    large = w.clamp(min=math.log(2))
    return torch.where(w < math.log(2), torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))
