"""Parameters of several modules of one architecture stacked along a new first dimension, as torch.func stacks
them (stack_module_state), laid out for the optimiser that steps them (vae_lab.runtime.stack: a stacked sweep's
models; vae_lab.penalties: FactorVAE's discriminators of such a stack).

An optimiser over stacked tensors (Adam, Adagrad: entry by entry) is one independent optimiser per module. A
batched product's weight gradient comes out transposed, though, and autograd would copy it into its parameter's
layout at every step, and a fused optimiser would copy a parameter laid out otherwise: on a CPU a strided copy of
every weight, half a stacked step's time. So each stacked parameter is stored permuted into its gradient's memory
order, contiguous (`stored`, what the optimiser steps), and the forward sees it permuted back (`params()`), the
gradient then arriving contiguous. One backward on a probe at build time shows each gradient's strides.
"""
import torch
from torch.func import stack_module_state


def inverse(order):
    return tuple(sorted(range(len(order)), key=order.__getitem__))


def per_entry(v, size):
    """A per-entry optimiser state (a moment, (size, ...)), as opposed to a scalar one (the step count)."""
    return isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == size


class Stacked:
    """The parameters and buffers of `modules`, stacked. `probe(params, buffers)` -> a scalar whose backward reaches
    the parameters, evaluated once on copies to learn the gradients' layouts (no random draw)."""

    def __init__(self, modules, probe):
        params, self.buffers = stack_module_state(modules)
        self.size = len(modules)
        copies = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
        strides = {}
        for k, p in copies.items():
            p.register_hook(lambda g, k=k: strides.update({k: g.stride()}))
        probe(copies, self.buffers).backward()
        self.orders = {}
        for k, p in params.items():
            order = tuple(sorted(range(p.dim()), key=lambda d: -strides.get(k, p.stride())[d]))
            self.orders[k] = order if order and order[0] == 0 else tuple(range(p.dim()))  # modules stay first
        self.stored = {k: p.detach().permute(self.orders[k]).contiguous().requires_grad_() for k, p in params.items()}
        self.names = list(self.stored)  # in the modules' parameter order, as their own optimisers index them

    def params(self):
        """{name: (M, ...) stacked parameter}, views of `stored` in the modules' own shapes."""
        return {k: p.permute(inverse(self.orders[k])) for k, p in self.stored.items()}

    def optimizer_state(self, states):
        """One optimiser state dict over `stored` from the modules' own optimisers' (the same step count in each)."""
        out = {"state": {}, "param_groups": states[0]["param_groups"]}
        for i in states[0]["state"]:
            per, order = [s["state"][i] for s in states], self.orders[self.names[i]]
            out["state"][i] = {k: torch.stack([p[k] for p in per]).permute(order).contiguous()
                               if isinstance(v, torch.Tensor) and v.dim() > 0 else v
                               for k, v in per[0].items()}
        return out

    def module_states(self, stacked):
        """Each module's own optimiser state dict from the stacked optimiser's."""
        unstacked = {j: {k: v.permute(inverse(self.orders[self.names[j]])) if per_entry(v, self.size) else v
                         for k, v in s.items()} for j, s in stacked["state"].items()}
        return [{"param_groups": stacked["param_groups"],
                 "state": {j: {k: v[i].clone(memory_format=torch.contiguous_format) if per_entry(v, self.size)
                               else v.clone() for k, v in s.items()} for j, s in unstacked.items()}}
                for i in range(self.size)]

    @torch.no_grad()
    def copy_into(self, modules):
        params = self.params()
        for i, module in enumerate(modules):
            for name, p in module.named_parameters():
                p.copy_(params[name][i])
