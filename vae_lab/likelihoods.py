"""Likelihoods p(x|z): decoder output -> torch.distributions object; log p(x|z) summed over all pixels, in nats."""
import math

import torch
from torch import distributions as D
from torch import nn

from vae_lab.checks import ConfigError, choice, number


class Likelihood(nn.Module):
    """Base of the `likelihood` group. Built as `Likelihood(shape=(C, H, W), **config)`.

    `distribution(params)` maps the decoder's raw output (B, C, H, W) to a distribution over pixels.
    """

    data_range = (-math.inf, math.inf)  # values of x this likelihood is defined on

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

    def distribution(self, params):
        return D.Bernoulli(logits=params, validate_args=False)

    def log_prob(self, x, params):
        # Same value as Bernoulli(logits).log_prob(x) (tests check it) without building the object each step.
        if params.device.type == "cpu":
            return BernoulliLogProb.apply(params, x).flatten(1).sum(1)
        return -nn.functional.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)


class BernoulliLogProb(torch.autograd.Function):
    """log Bernoulli(x; logits l) per pixel = x l - softplus(l), softplus(l) = max(l, 0) + log1p(exp(-|l|)).

    A CPU fast path: torch's CPU log1p is not vectorised while log is, so binary_cross_entropy_with_logits spends
    most of its time in log1p (scripts/bench.py: log1p_vs_log, bernoulli_log_prob). Here log1p comes from log at
    the same accuracy: log1p(e) = log(u) - ((u - 1) - e) / u with u = 1 + e: (u - 1) - e is exactly the rounding
    error of 1 + e (e <= 1), and dividing it by u is the first-order term of what log(u) lost by it.
    """

    @staticmethod
    def forward(ctx, logits, x):
        ctx.save_for_backward(logits, x)
        e = logits.abs().neg_().exp_()  # exp(-|l|), in (0, 1]
        u = e + 1
        log1p_e = torch.log(u).sub_((u - 1).sub_(e).div_(u))
        return (x * logits).sub_(logits.clamp(min=0)).sub_(log1p_e)

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        grad_logits = (x - torch.sigmoid(logits)).mul_(grad) if ctx.needs_input_grad[0] else None
        grad_x = (grad * logits).sum_to_size(x.shape) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


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
