"""What a likelihood's log p is, which decides whether -ELBO is a code length (vae_lab.measure.elbo.bits_per_dim).

A probability of discrete data (Bernoulli on binary pixels, the discretised logistic on 8-bit values) makes
-ELBO / (D ln 2) an upper bound on the bits per dimension of a lossless code (bits-back). A density (Gaussian,
Laplace, continuous Bernoulli) on 8-bit data can be made arbitrarily high at the 256 levels, so its -log p is no
code length (Theis et al. 2016); it bounds one only on uniformly dequantised data (`dataset.dequantize=uniform`).
A Bernoulli on grey levels is not normalised over them at all.
"""

PROBABILITY, DENSITY, UNNORMALISED = "probability", "density", "unnormalised"  # what a likelihood's log p is
LEVELS = 256  # 8-bit data: the levels k = 0..255, dequantised to y = (k + u) / 256
