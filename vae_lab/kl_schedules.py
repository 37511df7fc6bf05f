"""The weight on the KL penalty over training: the `kl` group. Each schedule is a pure function of the step.

The weight multiplies the `penalty` group's main coefficient (β of the β-VAE and of β-TCVAE's total correlation,
the multiplier of capacity's γ). Every schedule has `beta`, its largest weight, so one sweep over kl.beta spans
every schedule and penalty. The ELBO that is reported never depends on either.
"""
from vae_lab.checks import ConfigError, number


class KLSchedule:
    """Base of the `kl` group. Built as `KLSchedule(total_steps=T, steps_per_epoch=E, **config)`: the run's length in
    steps and the steps in each of its epochs, for schedules written in either.

    `weight(step)` is the weight the penalty receives, logged as train/kl_weight.
    """

    def __init__(self, beta=1.0, total_steps=None, steps_per_epoch=None):
        self.beta = number("beta", beta, low=0)
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch

    def weight(self, step):
        raise NotImplementedError


class Constant(KLSchedule):
    """A fixed weight: beta = 1 is the ELBO; beta > 1 the beta-VAE of Higgins et al. 2017."""

    def weight(self, step):
        return self.beta


class Linear(KLSchedule):
    """KL warm-up (Bowman et al. 2016): the weight rises linearly from `start` to `beta` over `warmup_steps`, or over
    `warmup_epochs` when that is set (Tomczak & Welling 2018: 100 epochs), with the run's `steps_per_epoch`."""

    def __init__(self, beta=1.0, start=0.0, warmup_steps=10_000, warmup_epochs=None, total_steps=None,
                 steps_per_epoch=None):
        super().__init__(beta, total_steps, steps_per_epoch)
        self.start = number("start", start, low=0)
        self.warmup_steps = number("warmup_steps", warmup_steps, low=1, integer=True)
        if warmup_epochs is not None:
            epochs = number("warmup_epochs", warmup_epochs, low=0, low_open=True)
            if steps_per_epoch is None:  # never ignored: a run must not silently warm up over warmup_steps instead
                raise ConfigError(f"warmup_epochs={warmup_epochs}: needs steps_per_epoch, which the training loop "
                                  "passes to the schedule; without it use warmup_steps")
            steps_per_epoch = number("steps_per_epoch", steps_per_epoch, low=1, integer=True)
            self.warmup_steps = max(1, round(epochs * steps_per_epoch))

    def weight(self, step):
        return self.start + (self.beta - self.start) * min(1.0, step / self.warmup_steps)


class Cyclical(KLSchedule):
    """Cyclical annealing (Fu et al. 2019): `n_cycles` cycles over the run; in each, the weight rises
    linearly from 0 to `beta` over the first `ratio` of the cycle, then holds at `beta`."""

    def __init__(self, beta=1.0, n_cycles=4, ratio=0.5, total_steps=None, steps_per_epoch=None):
        super().__init__(beta, total_steps, steps_per_epoch)
        self.n_cycles = number("n_cycles", n_cycles, low=1, integer=True)
        self.ratio = number("ratio", ratio, low=0, low_open=True, high=1)
        self.total_steps = number("total_steps", total_steps, low=1, integer=True)

    def weight(self, step):
        cycle = self.total_steps / self.n_cycles
        tau = (step % cycle) / cycle  # position in the current cycle, in [0, 1)
        return self.beta * min(1.0, tau / self.ratio)
