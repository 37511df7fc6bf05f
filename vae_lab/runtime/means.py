"""The train/ scalars: each step's terms, checked by the non-finite guard, averaged over the steps since the last log."""
import math

import torch


class TrainingMeans:
    """Sums of the per-step terms (recon_ll, kl, loss, then the penalty's terms, then the figures its update()
    returns, `later`) and of the KL weight over the checked steps since the last `pop()`."""

    def __init__(self, names, device, later=()):
        self.names = ("recon_ll", "kl", "loss", *names, *later)
        self.later = tuple(later)
        self.sums = torch.zeros(len(self.names), device=device)
        self.count, self.weight_sum = 0, 0.0

    def add(self, rows):
        """Rows (n, len(names)) the guard has checked."""
        self.sums += rows.sum(0)

    def count_step(self, weight):
        self.count, self.weight_sum = self.count + 1, self.weight_sum + weight

    def pop(self):
        """{name: mean} and kl_weight over the steps since the last call (NaN if there were none)."""
        if self.count == 0:
            return dict.fromkeys((*self.names, "kl_weight"), math.nan)
        out = dict(zip(self.names, (self.sums / self.count).tolist()))
        out["kl_weight"] = self.weight_sum / self.count
        self.sums.zero_()
        self.count, self.weight_sum = 0, 0.0
        return out

    def state_dict(self):
        return {"sums": self.sums.cpu(), "count": self.count, "weight_sum": self.weight_sum}

    def load_state_dict(self, state):
        # A checkpoint from before the penalty group holds the first three sums only; the penalty's restart at 0.
        self.sums.zero_()[: len(state["sums"])].copy_(state["sums"])
        self.count, self.weight_sum = int(state["count"]), float(state["weight_sum"])
