"""Many models trained as one (hydra/launcher=stacked): which jobs of a sweep may share a stack, the stacked
parameters and optimiser, and the checkpoints of a stack, consistent across its members.

A stack holds M models of one architecture. Their parameters are stacked along a new first dimension
(torch.func.stack_module_state), one forward runs them all (torch.func.vmap over functional_call: a linear layer
becomes a batched product, a convolution a grouped one), and one optimiser of the group's class steps the stacked
tensors: Adam, Adagrad and the like act entry by entry, so one over stacked tensors is M independent ones (they share
the step count, which all members advance together). Each member keeps its own modules (`Training`): the stack
copies its parameters and optimiser state into them (`sync`) before they are validated or saved, and from them when
a stack is built or resumed, so a member's checkpoint is a lone run's, in today's format.
"""
import copy
import json
import os
from pathlib import Path

import torch
from torch.func import functional_call

from vae_lab import nested, rundir
from vae_lab.checks import ConfigError
from vae_lab.runtime.build import build_optimizer, build_scheduler
from vae_lab.runtime.checkpoint import load, save_atomic
from vae_lab.stacking import Stacked, per_entry

# The config keys in which jobs of one stack may differ, each a prefix: everything else (a shape, a class, an option
# that changes the step's code, the optimiser and its learning rate: one parameter group cannot split a stacked
# tensor) puts jobs in separate stacks. The seed (initialisation, data order, every random stream) and the KL
# schedule (the loop computes each member's weight) are the member's own; the penalty's constants are held by each
# member's own penalty; a likelihood's scale is a buffer or parameter, stacked with the others.
STACKABLE = ("seed", "dataset.seed", "dataset.split_seed", "kl", "penalty.alpha", "penalty.gamma", "penalty.c_max",
             "penalty.ramp_steps", "penalty.free_nats", "penalty.lambda_od", "penalty.lambda_d_factor",
             "likelihood.sigma", "resume", "objective")

MANIFEST = "stack.json"  # in the stack's directory: its members and the last step all their checkpoints hold
PENDING = ".pending"  # a member's checkpoint written, not yet committed by the manifest


def stackable(key):
    return any(key == k or key.startswith(k + ".") for k in STACKABLE)


def groups(configs, max_stack):
    """[(member indices, keys that set the stack apart from the first)] of plain resolved config dicts: jobs
    whose configs differ only in STACKABLE keys share a stack, at most `max_stack` members each."""
    found = []  # (representative config, members)
    for i, cfg in enumerate(configs):
        for rep, members in found:
            if not [k for k in nested.differences(rep, cfg) if not stackable(k)]:
                members.append(i)
                break
        else:
            found.append((cfg, [i]))
    out = []
    for rep, members in found:
        apart = sorted({k for k in nested.differences(found[0][0], rep) if not stackable(k)})
        out += [(members[i : i + max_stack], apart) for i in range(0, len(members), max_stack)]
    return out


def swept(configs, members):
    """'kl.beta=1,4 seed=0,1': the stackable keys whose values differ among `members`' configs."""
    values = {}
    for i in members:
        for key in nested.differences(configs[members[0]], configs[i]):
            values.setdefault(key, set())
    for key in values:
        values[key] = list(dict.fromkeys(str(nested.get(configs[i], key)) for i in members))
    return " ".join(f"{k}={','.join(v)}" for k, v in sorted(values.items())) or "one config"


class Stack:
    """The stacked parameters, buffers and optimiser of `members` (Trainings of one architecture, at one step), and
    what steps their penalties' own parameters (Penalty.stack_updates)."""

    def __init__(self, members, record):
        self.members, self.record, self.size = members, record, len(members)
        lead = members[0]
        models = [m.state.model for m in members]
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; functional_call gives it each member's tensors

        def probe(params, buffers):  # the ELBO on two zero images, zero noise
            x = torch.zeros(self.size, 2, *lead.data.shape, device=lead.data.device)
            terms = torch.func.vmap(self.forward)(params, buffers, x, x.new_zeros(self.size, 2, lead.latent_dim))
            return terms.recon_ll.sum() - terms.kl.sum()

        self.stacked = Stacked(models, probe)
        self.stored, self.buffers = self.stacked.stored, self.stacked.buffers
        self.optimizer = build_optimizer(lead.cfg, self.stored.values())
        self.scheduler = build_scheduler(lead.cfg, self.optimizer, lead.steps_per_epoch)
        self.optimizer.load_state_dict(self.stacked.optimizer_state([m.state.optimizer.state_dict() for m in members]))
        self.scheduler.load_state_dict(lead.state.scheduler.state_dict())
        self.penalty_updates = type(lead.state.penalty).stack_updates([m.state.penalty for m in members])
        self.frozen = torch.zeros(self.size, dtype=torch.bool, device=next(iter(self.stored.values())).device)
        self.any_frozen = False  # known on the host: no masking kernels while every member trains

    @property
    def params(self):
        return self.stacked.params()

    def forward(self, params, buffers, x, noise):
        """One member's ELBO terms (vmapped over the stack by the loop)."""
        return functional_call(self.base, (params, buffers), (x,), {"noise": noise})

    def grad_figures(self):
        """(parameters, M): each member's gradient sum per parameter, non-finite where an entry is (the guard's row)."""
        return torch.stack([p.grad.flatten(1).sum(1) if p.grad is not None else self.frozen.new_zeros(self.size, dtype=torch.float32)
                            for p in self.stored.values()])

    def mask_frozen(self):
        """A frozen member's gradients are zeroed: with its optimiser moments zeroed at freezing, its update is 0."""
        if not self.any_frozen:
            return
        for p in self.stored.values():
            if p.grad is not None:
                p.grad.masked_fill_(self.frozen.view(-1, *[1] * (p.dim() - 1)), 0)

    def freeze(self, i):
        """Member i ended (diverged): its updates are masked out from now on; the others train on unperturbed."""
        self.frozen[i], self.any_frozen = True, True
        for state in self.optimizer.state.values():
            for v in state.values():
                if per_entry(v, self.size):
                    v[i] = 0

    @torch.no_grad()
    def sync(self):
        """Copy the stack's parameters, optimiser and scheduler state into each member's own modules."""
        self.stacked.copy_into([m.state.model for m in self.members])
        for m, state in zip(self.members, self.stacked.module_states(self.optimizer.state_dict())):
            m.state.optimizer.load_state_dict(state)
            m.state.scheduler.load_state_dict(self.scheduler.state_dict())
        self.penalty_updates.sync()


def save_members(states, dirs, name, record, step):
    """Each member's checkpoint `name`; for last.pt, committed together: each is written beside its last.pt, then
    the stack's manifest says `step`, then each replaces its last.pt. A kill at any moment leaves every member's
    last.pt at one step, or pending files that `settle` commits (the manifest reached their step) or drops."""
    if name != rundir.LAST:
        for state, d in zip(states, dirs):
            save_atomic(state, rundir.checkpoint(d, name))
        return
    pending = [Path(str(rundir.checkpoint(d)) + PENDING) for d in dirs]
    for state, path in zip(states, pending):
        save_atomic({**state, "stack": record}, path)
    write_manifest(record, step)
    for d, path in zip(dirs, pending):
        commit(path, d)


def write_manifest(record, step):
    """The stack's manifest, saying that every member's checkpoint of `step` is written: the commit point."""
    manifest = Path(record["manifest"])
    rundir.write_text(manifest, json.dumps({**read_manifest(manifest), **record, "step": step}, indent=1) + "\n")


def commit(pending, run_dir):
    os.replace(pending, rundir.checkpoint(run_dir))


def read_manifest(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def settle(run_dir):
    """Commit or drop a stacked member's pending last.pt (save_members), before the run is resumed."""
    pending = Path(str(rundir.checkpoint(run_dir)) + PENDING)
    if not pending.is_file():
        return
    try:
        saved = load(pending)
    except ConfigError:  # cut short while written: the manifest never reached it
        pending.unlink()
        return
    if read_manifest(saved["stack"]["manifest"]).get("step") == saved["step"]:
        commit(pending, run_dir)
    else:
        pending.unlink()
