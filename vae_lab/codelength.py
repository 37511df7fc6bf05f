"""Bits per dimension only where they are a code length: what a likelihood's log p is decides what -ELBO means.

A probability of discrete data (Bernoulli on binary pixels, the discretised logistic on 8-bit values) makes
-ELBO / (D ln 2) an upper bound on the bits per dimension of a lossless code (bits-back). A density (Gaussian,
Laplace, continuous Bernoulli) on 8-bit data can be made arbitrarily high at the 256 levels, so its -log p is no
code length (Theis et al. 2016); it bounds one only on uniformly dequantised data (`dataset.dequantize=uniform`).
A Bernoulli on grey levels is not normalised over them at all.
"""
import math
from typing import NamedTuple

PROBABILITY, DENSITY, UNNORMALISED = "probability", "density", "unnormalised"  # what a likelihood's log p is
LOG_PROB_KINDS = (PROBABILITY, DENSITY, UNNORMALISED)
LEVELS = 256  # 8-bit data: the levels k = 0..255, dequantised to y = (k + u) / 256


class BitsPerDim(NamedTuple):
    value: float | None  # bits per dimension (D = channels * height * width), or None where it is no code length
    reason: str  # one line: why it is a code length, or why there is none


def bits_per_dim(elbo, likelihood, data):
    """BitsPerDim(value or None, reason) for `elbo`, a lower bound on log p(x) in nats per image (the ELBO, or
    -iwae_nll), of `data` under `likelihood` (a vae_lab.likelihoods.Likelihood)."""
    kind, why = likelihood.log_prob_kind(data)
    d = data.num_pixels
    name = type(likelihood).__name__
    if kind == PROBABILITY:
        return BitsPerDim(-elbo / (d * math.log(2)), f"{why}: -ELBO / (D ln 2) bounds its code length")
    if kind == UNNORMALISED:
        return BitsPerDim(None, why)
    if data.dequantize == "uniform":
        # Theis et al. 2016, sec. 3.1: with y = (x + u) / 256, u ~ U[0, 1)^D, the discrete model
        # P(x) = ∫ p(y) dy over x's cell of side 1/256 satisfies, by Jensen,
        # log P(x) = log E_u[p(y)] - D log 256 >= E_u[log p(y)] - D log 256 >= E_u[ELBO(y)] - D log 256.
        value = (-elbo + d * math.log(LEVELS)) / (d * math.log(2))
        return BitsPerDim(value, f"{name} on uniformly dequantised 8-bit data: (-ELBO + D log 256) / (D ln 2) "
                                 "bounds the code length of the 8-bit image (Theis et al. 2016)")
    if data.binary:
        return BitsPerDim(None, f"{name} on binary pixels is a density, not a code length: use likelihood=bernoulli")
    return BitsPerDim(None, f"{name} on grey levels without dequantisation is a density, not a code length: "
                            "train with dataset.dequantize=uniform")
