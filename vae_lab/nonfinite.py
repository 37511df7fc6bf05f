"""NaN or Inf in the ELBO terms or the gradients, caught at the step it appears.

Default (`stop`): each step records, on the device, whether every term and gradient is finite and the first step
where one is not; the loop reads that record at logging and checkpoint steps (no host sync on other steps) and
stops before writing anything computed after the bad step. `skip` reads it every step (one sync per step) and
drops a bad step's update.
"""
import math

import torch

from vae_lab.checks import choice


class NonFiniteGuard:
    def __init__(self, model, mode="stop"):
        self.skip = choice("trainer.nonfinite", mode, ("stop", "skip")) == "skip"
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = ["reconstruction term log p(x|z)", "KL term", "loss"] + [f"gradient of {n}" for n, _ in named]
        self.params = [p for _, p in named]
        self.skipped = 0
        self.first_step = None  # (device) first bad step, -1 while there is none
        self.first_flags = None  # (device) which of `names` were finite at that step

    def step_ok(self, step, terms, loss):
        """After backward(): False if this step's update must be dropped (only in `skip` mode)."""
        no_grad = loss.new_ones((), dtype=torch.bool)  # a parameter the loss does not reach
        flags = torch.stack([terms.recon_ll.isfinite().all(), terms.kl.isfinite().all(), loss.isfinite(),
                             *(no_grad if p.grad is None else p.grad.isfinite().all() for p in self.params)])
        if self.skip:
            if bool(flags.all()):
                return True
            self.skipped += 1
            return False
        if self.first_step is None:
            self.first_step = torch.full((), -1, device=flags.device)
            self.first_flags = torch.ones_like(flags)
        newly = flags.logical_not().any() & (self.first_step < 0)
        self.first_step = torch.where(newly, step + 1, self.first_step)  # steps are counted from 1 in the logs
        self.first_flags = torch.where(newly, flags, self.first_flags)
        return True

    def diverged(self, step, figures=None, saving=False):
        """A one-line account of the first non-finite value, or None. Host sync: call at log and checkpoint steps.

        Before a checkpoint (`saving`) the parameters themselves are checked too, and after an evaluation its
        `figures`: a finite step can still produce an update that overflows them.
        """
        if self.first_step is not None and int(self.first_step) >= 0:
            names = [n for n, ok in zip(self.names, self.first_flags.tolist()) if not ok]
            more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
            return f"training diverged at step {int(self.first_step)}: non-finite {', '.join(names[:3])}{more}"
        if saving:
            bad = next((n for n, p in zip(self.names[3:], self.params) if not bool(p.isfinite().all())), None)
            if bad is not None:
                return f"training diverged by step {step}: non-finite {bad.removeprefix('gradient of ')} after an update"
        bad = [k for k in ("elbo", "recon_nll", "kl") if figures is not None and not math.isfinite(figures[k])]
        if bad:
            return f"training diverged by step {step}: validation {', '.join(f'{k} {figures[k]}' for k in bad)}"
        return None
