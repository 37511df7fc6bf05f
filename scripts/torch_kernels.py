"""vae_lab options with the bare loop's kernels, for scripts/bench.py's `same_kernels` contender.

Selected through the likelihood group's `_target_` like any other option (`likelihood._target_=torch_kernels.
TorchBernoulli`, with scripts/ on sys.path), so vae_lab's own classes run unchanged.
"""
from torch.nn import functional as F

from vae_lab.likelihoods import Bernoulli


class TorchBernoulli(Bernoulli):
    """Bernoulli with torch's binary_cross_entropy_with_logits on every device, as scripts/plain_loop.py computes it
    (vae_lab's Bernoulli takes a faster path of its own on the CPU)."""

    def log_prob(self, x, params):
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)  # (B,), nats
