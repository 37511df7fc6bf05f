"""The non-finite guard: one row per training step, kept on the device until the loop looks at it.

`NonFiniteGuard` writes one row per step: the reconstruction term, the KL term, the loss, the penalty's weighted
terms and one figure per parameter's gradient (its largest |entry| on a GPU, its sum on a CPU). A NaN or Inf among
them is reported with its step and its name. With `stop` (the default) rows are written without a host sync and checked when the loop calls `problem()` at its
logging and checkpoint steps, so a run stops before anything computed after a bad step is logged or saved. `skip`
reads each row at once (one sync per step) and drops a bad step's update. The rows found finite go to the
TrainingMeans (vae_lab.runtime.means): the train/ scalars.
"""
import math

import torch

from vae_lab import rundir
from vae_lab.runtime import checkpoint


class NonFiniteGuard:
    TERMS = ("reconstruction term log p(x|z)", "KL term", "loss")  # then the penalty's, then one gradient per parameter

    def __init__(self, model, skip, means, rows=1024):
        self.skip = skip  # trainer.nonfinite=skip (checked with the config)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.n_terms = len(means.names)
        self.parts = means.names[3 : self.n_terms - len(means.later)]  # the penalty's terms; then its update's figures
        self.names = [*self.TERMS, *(f"penalty term {n}" for n in self.parts),
                      *(f"penalty update's {n}" for n in means.later), *(f"gradient of {n}" for n, _ in named)]
        device = self.params[0].device if self.params else torch.device("cpu")
        self.rows = torch.empty(rows, len(self.names), device=device)  # (rows, 3 + parameters)
        self.fused = device.type == "cuda"  # one kernel for all gradients' checks (scripts/bench.py, README)
        self.n, self.first_step, self.found = 0, 0, None  # rows not yet checked; the step of the first; a problem
        self.means, self.skipped = means, 0

    def record(self, step, loss, terms, parts, weight, grads=None):
        """Record step `step` (0-based) after backward(); False if its update must be dropped (`skip` only).
        `parts`: the penalty's weighted terms, in the order of the means' names. `grads`: one figure per parameter,
        non-finite where its gradient is, where the caller has them (a stack computes every member's at once);
        else read from the parameters' gradients."""
        if self.n == len(self.rows):
            self._check()
        if grads is None:
            grads = [p.grad if p.grad is not None else loss.new_zeros(()) for p in self.params]
            if self.fused:  # every gradient's largest |entry| in one fused kernel: non-finite exactly when an entry is
                grads = torch._foreach_norm(grads, float("inf"))
            else:  # torch's CPU has no fused kernel for that; a sum is non-finite when an entry is (or it overflows)
                grads = [g.sum() for g in grads]
        else:
            grads = grads.unbind()
        row = self.rows[self.n]
        later = [loss.new_zeros(())] * len(self.means.later)  # written by record_later() once the update has run
        torch.stack([terms.recon_ll.detach().mean(), terms.kl.detach().sum(1).mean(), loss.detach(),
                     *(parts[n].detach().float() for n in self.parts), *later, *grads], out=row)
        if self.skip and not bool(row.isfinite().all()):
            self.skipped += 1
            return False
        self.first_step = step if self.n == 0 else self.first_step
        self.n += 1
        self.means.count_step(weight)
        return True

    def record_later(self, figures):
        """The penalty update's figures ({name: scalar tensor}) of the step recorded last, checked with its row."""
        if figures:
            start = self.n_terms - len(self.means.later)
            self.rows[self.n - 1, start : self.n_terms] = torch.stack([figures[n].detach().float() for n in self.means.later])

    def _check(self):
        """Hand the rows written since the last check to the means, or keep an account of the first bad one."""
        if self.found or self.n == 0:
            return
        ok = self.rows[: self.n].isfinite()
        if not bool(ok.all()):
            i = int(ok.all(1).logical_not().nonzero()[0])
            names = [n for n, good in zip(self.names, ok[i].tolist()) if not good]
            more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
            self.found = f"training diverged at step {self.first_step + i + 1}: non-finite {', '.join(names[:3])}{more}"
            self.n = 0  # nothing after it matters
            return
        self.means.add(self.rows[: self.n, : self.n_terms])
        self.n = 0

    def problem(self, step, result=None, saving=False):
        """A one-line account of the first non-finite value, or None. Host sync: call at log and checkpoint steps.

        Before a checkpoint (`saving`) the parameters themselves are checked too, and after an evaluation its
        `result`: a step whose every term is finite can still leave parameters that overflow.
        """
        self._check()
        if self.found:
            return self.found
        if saving and self.params:
            finite = torch.stack([p.isfinite().all() for p in self.params]).tolist()  # one sync
            bad = [n.removeprefix("gradient of ") for n, ok in zip(self.names[self.n_terms :], finite) if not ok]
            if bad:
                return f"training diverged by step {step}: non-finite {bad[0]} after an update"
        bad = [k for k in ("elbo", "recon_nll", "kl") if result is not None and not math.isfinite(result[k])]
        if bad:
            return f"training diverged by step {step}: validation {', '.join(f'{k} {result[k]}' for k in bad)}"
        return None


def diverged_message(problem, run_dir):
    """The run's error once it diverged: the problem, the checkpoint kept, what to change."""
    last = rundir.checkpoint(run_dir)
    kept = (f"the last good checkpoint, {last} (step {checkpoint.load(last)['step']}), is kept" if last.is_file()
            else "no checkpoint had been written")
    return f"{problem}; {kept}. Lower optimizer.lr (or, for rare bad batches, set trainer.nonfinite=skip)"
