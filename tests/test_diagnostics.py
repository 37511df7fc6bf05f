"""Active units, mutual information, MIG and the collapse verdict on hand-built codes and encoders."""
import logging
import math

import pytest
import torch
from conftest import TINY, compose_config
from torch import nn

from vae_lab.build import build, build_model
from vae_lab.diagnostics import CollapseWatch, collapse
from vae_lab.metrics import active_units, measure
from vae_lab.mig import discrete_mi, entropy, mig
from vae_lab.model import VAE

SIZES = (3, 6, 10)  # factor classes; at most the 20 histogram bins, so an exact code keeps all the information


def _factors(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (n,), generator=g) for s in SIZES], 1)


def test_mig_of_an_identity_like_code_is_near_one():
    f = _factors()
    noise = 0.01 * torch.randn(f.shape, generator=torch.Generator().manual_seed(1))
    code = (f.double() * torch.tensor([2.0, -0.5, 3.0]) + noise)[:, [2, 0, 1]]  # scaled, flipped, permuted
    code = torch.cat([code, torch.zeros(len(f), 2)], 1)  # plus two dead units
    score, per_factor = mig(code, f, ["a", "b", "c"])
    assert score > 0.95 and set(per_factor) == {"a", "b", "c"}


def test_mig_of_a_code_independent_of_the_factors_is_near_zero():
    code = torch.randn(4000, 5, generator=torch.Generator().manual_seed(2))
    assert mig(code, _factors())[0] < 0.05


def test_mig_of_an_entangled_code_is_low():
    """Every factor spread evenly over two dimensions: each carries the same information, the gap is ~0."""
    f = _factors().double()
    code = torch.stack([f[:, 0] + f[:, 1] / 6, f[:, 0] + f[:, 1] / 6, f[:, 2]], 1)  # factors 0, 1 mixed, twice
    score, per_factor = mig(code, f.long(), ["a", "b", "c"])
    assert per_factor["a"] < 0.05 and per_factor["b"] < 0.05 and per_factor["c"] > 0.95


def test_discrete_mi_and_entropy():
    a = torch.arange(1000) % 4
    assert entropy(a) == pytest.approx(math.log(4))
    assert discrete_mi(a, a) == pytest.approx(math.log(4))
    assert discrete_mi(a, a * 7 + 1) == pytest.approx(math.log(4))  # labels do not matter
    assert discrete_mi(a, (torch.arange(1000) // 4) % 5) == pytest.approx(0.0, abs=1e-12)  # independent by design


def test_active_units_counts_dimensions_whose_mean_varies():
    means = torch.zeros(500, 4)
    means[:, 1] = torch.linspace(-1, 1, 500)
    means[:, 3] = 0.05 * torch.linspace(-1, 1, 500)  # variance 0.0008: below the 0.01 threshold
    assert active_units(means) == 1


class ConstantEncoder(nn.Module):
    """q(z|x) = N(0, I) whatever x is: the collapsed posterior."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim, self.unused = latent_dim, nn.Linear(1, 1)

    def forward(self, x):
        zeros = torch.zeros(x.shape[0], self.latent_dim)
        return zeros, zeros


def test_constant_posterior_is_collapsed():
    cfg = compose_config(TINY)
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    model = VAE(ConstantEncoder(cfg.latent_dim), model.decoder, model.likelihood, model.prior)
    figures = measure(model, data, "val", 64, 32, iwae_k=3)
    assert figures["active_units"] == 0 and figures["kl"] == pytest.approx(0.0, abs=1e-6)
    assert figures["index_code_mi"] == pytest.approx(0.0, abs=1e-9)
    assert figures["total_correlation"] == pytest.approx(0.0, abs=1e-9)
    assert figures["collapse"] == "collapsed" and figures["collapse_reason"].startswith("0 of 4 latent dimensions active")
    assert figures["mig"] == 0.0


def test_collapse_verdicts():
    assert collapse(0, 2, 0.002) == ("collapsed", "0 of 2 latent dimensions active; KL 0.002 nats")
    assert collapse(1, 2, 0.01)[0] == "collapsed"  # a unit whose mean varies, but almost no information
    assert collapse(3, 10, 12.0)[0] == "partial"
    assert collapse(2, 2, 5.0)[0] == "ok"


def test_collapse_warning_is_logged_once_after_patience(caplog):
    watch = CollapseWatch(patience=2)
    bad = {"collapse": "collapsed", "collapse_reason": "0 of 2 latent dimensions active; KL 0.001 nats"}
    with caplog.at_level(logging.WARNING, logger="vae_lab"):
        for step, figures in enumerate([bad, {"collapse": "ok"}, bad, bad, bad, bad]):
            watch.update(figures, step)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "at step 3" in warnings[0]
    assert "loss.reduction=sum" in warnings[0] and "penalty=free_bits" in warnings[0]
