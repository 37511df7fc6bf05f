"""Learning-rate schedules: the `scheduler` group, torch.optim.lr_scheduler classes stepped once per training step.

An option is a partial of a scheduler class (`_partial_: true`), finished with the optimizer when a run is built;
vae_lab's own classes below also receive the run's `steps_per_epoch`, so they can be written in epochs.
"""
from torch.optim.lr_scheduler import LambdaLR

from vae_lab.checks import number


class EpochPhases(LambdaLR):
    """The learning rate times `decay` ** i / `phases` during phase i, where phase i lasts `base` ** i epochs
    (i = 0 .. phases): Burda et al. 2016, sec. 5: 3^i passes over the data at 0.001 · 10^(−i/7), i = 0 .. 7
    (base 3, decay 0.1, phases 7; 3,280 epochs in all). After the last phase the rate stays at its last value."""

    def __init__(self, optimizer, steps_per_epoch, base=3, decay=0.1, phases=7):
        self.base = number("base", base, low=1, integer=True)
        self.decay = number("decay", decay, low=0, low_open=True)
        self.phases = number("phases", phases, low=0, integer=True)
        self.steps_per_epoch = number("steps_per_epoch", steps_per_epoch, low=1, integer=True)
        super().__init__(optimizer, self.factor)

    def phase(self, step):
        epoch, start = step / self.steps_per_epoch, 0
        for i in range(self.phases + 1):
            start += self.base**i
            if epoch < start:
                return i
        return self.phases

    def factor(self, step):
        return self.decay ** (self.phase(step) / self.phases) if self.phases else 1.0
