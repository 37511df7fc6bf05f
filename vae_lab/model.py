"""The VAE and its ELBO, written once for every encoder, decoder, likelihood, prior and KL schedule."""
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn


class Terms(NamedTuple):
    recon_ll: torch.Tensor  # (B,) log p(x|z), summed over pixels, nats
    kl: torch.Tensor  # (B, D) KL per latent dimension, or (B, 1) when it does not split
    mean: torch.Tensor  # (B, D) posterior mean
    log_var: torch.Tensor  # (B, D) posterior log-variance
    params: torch.Tensor  # (B, C, H, W) decoder output (raw parameters of p(x|z))
    z: torch.Tensor = None  # (B, D) the code decoded, z ~ q(z|x)

    @property
    def elbo(self):
        """(B,) the ELBO per image, E_q[log p(x|z)] - KL(q(z|x) || p(z)), single-sample estimate."""
        return self.recon_ll - self.kl.sum(1)


class VAE(nn.Module):
    def __init__(self, encoder, decoder, likelihood, prior):
        super().__init__()
        self.encoder, self.decoder, self.likelihood, self.prior = encoder, decoder, likelihood, prior
        prior.bind_encoder(encoder)  # a prior defined through the encoder (VampPrior) keeps it; others ignore it

    def forward(self, x, generator=None, noise=None):
        """The ELBO's terms for the images x (B, C, H, W); the reparameterisation noise is `noise` (B, D) when given
        (the training loop draws it for a whole global batch), else drawn from `generator`."""
        mean, log_var = (t.float() for t in self.encoder(x))  # ELBO terms in fp32 even under bf16 autocast
        # Reparameterisation (Kingma & Welling 2014, eq. 10): z = mu + sigma * eps, eps ~ N(0, I)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype) if noise is None else noise
        z = mean + (0.5 * log_var).exp() * eps
        params = self.decoder(z).float()
        return Terms(self.likelihood.log_prob(x, params), self.prior.kl(mean, log_var, z), mean, log_var, params, z)


class WholeBatch:
    """A step's batch held whole by the process that trains on it: the penalty sees the terms themselves and the loss
    takes their mean. (A batch shared among processes says the same two things its own way:
    vae_lab.runtime.distributed.Batch.)"""

    @staticmethod
    def sees(terms):
        return terms

    @staticmethod
    def mean(values):
        return values.mean()


WHOLE = WholeBatch()


def objective(terms, penalty, weight, step, recon_scale=1.0, batch=WHOLE):
    """(loss, {name: weighted penalty term}): the loss minimised is the mean over the batch's images of
    -log p(x|z) * recon_scale plus the penalty on the KL (vae_lab.penalties) given the schedule's weight.

    recon_scale is 1 for loss.reduction=sum (the ELBO's own weighting) and 1/pixels for `mean`, which is
    the same as multiplying the KL weight by the number of pixels. `batch` says what the penalty sees of the batch
    (`sees`) and how the images' terms are averaged (`mean`), where the terms are only part of it.
    """
    part, parts = penalty(batch.sees(terms), weight, step)
    return -batch.mean(terms.recon_ll) * recon_scale + part, parts


@contextmanager
def eval_mode(model):
    """`model` in evaluation mode inside the block, back in the mode it was in afterwards, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
