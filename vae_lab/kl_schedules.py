"""How the KL term enters the training objective. Each schedule is a pure function of the step.

The ELBO that is reported never depends on these: they change only the objective that is minimised.
Every schedule has `beta`, its largest weight (gamma for `capacity`), so one sweep over kl.beta spans them.
"""
import torch

from vae_lab.checks import number


class KLSchedule:
    """Base of the `kl` group. Built as `KLSchedule(total_steps=T, **config)`.

    `weight(step)` is the multiplier logged as train/kl_weight; `penalty(kl, step)` is the KL part of the
    objective, given the per-image KL split over dimensions, kl: (B, D) in nats. Default: weight * mean KL.
    """

    def __init__(self, beta=1.0, total_steps=None):
        self.beta = number("beta", beta, low=0)
        self.total_steps = total_steps

    def weight(self, step):
        raise NotImplementedError

    def penalty(self, kl, step):
        return self.weight(step) * kl.sum(1).mean()


class Constant(KLSchedule):
    """A fixed weight: beta = 1 is the ELBO; beta > 1 the beta-VAE of Higgins et al. 2017."""

    def weight(self, step):
        return self.beta


class Linear(KLSchedule):
    """KL warm-up (Bowman et al. 2016): the weight rises linearly from `start` to `beta` over `warmup_steps`."""

    def __init__(self, beta=1.0, start=0.0, warmup_steps=10_000, total_steps=None):
        super().__init__(beta, total_steps)
        self.start = number("start", start, low=0)
        self.warmup_steps = number("warmup_steps", warmup_steps, low=1, integer=True)

    def weight(self, step):
        return self.start + (self.beta - self.start) * min(1.0, step / self.warmup_steps)


class Cyclical(KLSchedule):
    """Cyclical annealing (Fu et al. 2019): `n_cycles` cycles over the run; in each, the weight rises
    linearly from 0 to `beta` over the first `ratio` of the cycle, then holds at `beta`."""

    def __init__(self, beta=1.0, n_cycles=4, ratio=0.5, total_steps=None):
        super().__init__(beta, total_steps)
        self.n_cycles = number("n_cycles", n_cycles, low=1, integer=True)
        self.ratio = number("ratio", ratio, low=0, low_open=True, high=1)
        self.total_steps = number("total_steps", total_steps, low=1, integer=True)

    def weight(self, step):
        cycle = self.total_steps / self.n_cycles
        tau = (step % cycle) / cycle  # position in the current cycle, in [0, 1)
        return self.beta * min(1.0, tau / self.ratio)


class Capacity(KLSchedule):
    """Controlled capacity (Burgess et al. 2018, eq. 8): gamma * |KL - C(step)|, with C rising linearly
    from 0 to `c_max` nats over `ramp_steps`. Here gamma is `beta`."""

    def __init__(self, beta=1000.0, c_max=25.0, ramp_steps=100_000, total_steps=None):
        super().__init__(beta, total_steps)
        self.c_max = number("c_max", c_max, low=0)
        self.ramp_steps = number("ramp_steps", ramp_steps, low=1, integer=True)

    def capacity(self, step):
        return self.c_max * min(1.0, step / self.ramp_steps)

    def weight(self, step):
        return self.beta

    def penalty(self, kl, step):
        return self.beta * (kl.sum(1).mean() - self.capacity(step)).abs()


class FreeBits(KLSchedule):
    """Free bits (Kingma et al. 2016, eq. 15): beta * sum_j max(lambda, batch-mean KL_j), with lambda = `free_nats`
    per latent dimension. Dimensions below lambda get no gradient from the KL; for priors whose KL does not
    split over dimensions, lambda applies to the total."""

    def __init__(self, beta=1.0, free_nats=0.5, total_steps=None):
        super().__init__(beta, total_steps)
        self.free_nats = number("free_nats", free_nats, low=0)

    def weight(self, step):
        return self.beta

    def penalty(self, kl, step):
        return self.beta * torch.clamp(kl.mean(0), min=self.free_nats).sum()
