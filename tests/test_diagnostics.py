"""Active units and the collapse verdict on hand-built codes and encoders (MIG: test_disentanglement.py)."""
import logging

import pytest
import torch
from helpers import TINY, compose_config
from torch import nn

from vae_lab.measure.collapse import CollapseWatch, active_units, collapse
from vae_lab.measure.elbo import measure
from vae_lab.model import VAE
from vae_lab.runtime.build import build, build_model


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
    assert figures["mig_dlib"] == 0.0


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
