"""The mog and vamp priors: densities against torch.distributions, sampling, the encoder hand-over, and every
prior through training, IWAE, sampling and pictures."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import EVAL_FIGURES, TINY, TINY_EVAL, compose_config, options, trained_run
from omegaconf import OmegaConf
from torch import distributions as D

from vae_lab import evaluate
from vae_lab.checks import ConfigError
from vae_lab.encoders import MLPEncoder
from vae_lab.measure.elbo import measure
from vae_lab.model import VAE, objective
from vae_lab.priors import MixtureOfGaussians, Prior, VampPrior, mixture_log_prob, normal_log_prob
from vae_lab.runtime.build import build, build_model

SHAPE = (1, 6, 6)


def test_mixture_of_gaussians_log_prob_matches_torch():
    prior = MixtureOfGaussians(3, components=4)
    with torch.no_grad():
        prior.log_vars.normal_()
        prior.logits.normal_()
    z = torch.randn(7, 3)
    reference = D.MixtureSameFamily(D.Categorical(logits=prior.logits),
                                    D.Independent(D.Normal(prior.means, (0.5 * prior.log_vars).exp()), 1))
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))


def test_mixture_log_prob_and_its_gradients_match_torch_near_and_far_from_components():
    """The matrix-product form (vae_lab.priors.mixture_log_prob) against torch.distributions, for codes far from every
    component and codes within 0.01 of one, where its terms cancel; values and gradients."""
    torch.manual_seed(0)
    means, log_vars = torch.randn(50, 8, requires_grad=True), (torch.randn(50, 8) - 3).requires_grad_()
    log_w = torch.log_softmax(torch.randn(50), 0)
    for z in (3 * torch.randn(40, 8), means.detach()[:40] + 0.01 * torch.randn(40, 8)):
        z = z.requires_grad_()
        ours = mixture_log_prob(z, means, log_vars, log_w)
        reference = D.MixtureSameFamily(D.Categorical(logits=log_w),
                                        D.Independent(D.Normal(means, (0.5 * log_vars).exp()), 1)).log_prob(z)
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)
        for a, b in zip(torch.autograd.grad(ours.sum(), (z, means, log_vars)),
                        torch.autograd.grad(reference.sum(), (z, means, log_vars))):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def _vamp_vae(components=5):
    encoder = MLPEncoder(SHAPE, 2, hidden=[8])
    prior = VampPrior(2, SHAPE, components=components)
    return VAE(encoder, torch.nn.Identity(), None, prior), encoder, prior


def test_vamp_prior_is_the_mixture_of_encoded_pseudo_inputs():
    vae, encoder, prior = _vamp_vae()
    z = torch.randn(7, 2)
    mean, log_var = encoder(prior.pseudo_inputs.clamp(0, 1))
    reference = D.MixtureSameFamily(D.Categorical(logits=torch.zeros(5)),
                                    D.Independent(D.Normal(mean, (0.5 * log_var).exp()), 1))
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))
    prior.log_prob(z).sum().backward()  # the density trains both the pseudo-inputs and the encoder
    assert prior.pseudo_inputs.grad.abs().sum() > 0 and encoder.head.weight.grad.abs().sum() > 0


def test_vamp_prior_initial_mean_keeps_pseudo_inputs_learnable():
    """Why configs/prior/vamp.yaml starts the pseudo-inputs at N(0.05, 0.01) and not at jmtomczak/vae_vampprior's
    experiment.py default of -0.05: through the hard-tanh into [0, 1], -0.05 +- a few 0.01 is exactly 0 with zero
    gradient, so every pseudo-input would stay the black image and the K components one Gaussian."""
    torch.manual_seed(0)
    encoder = MLPEncoder(SHAPE, 2, hidden=[8])
    for init_mean, learnable in ((0.05, True), (-0.05, False)):
        prior = VampPrior(2, SHAPE, components=50, init_mean=init_mean)
        VAE(encoder, torch.nn.Identity(), None, prior)
        prior.log_prob(torch.randn(7, 2)).sum().backward()
        assert bool(prior.pseudo_inputs.grad.abs().sum() > 0) is learnable, init_mean
    mean, _ = prior.components()  # at -0.05: the K components coincide
    torch.testing.assert_close(mean, mean[:1].expand_as(mean))


def test_vamp_prior_shares_the_encoder_without_copying_it():
    vae, _, _ = _vamp_vae()
    keys = vae.state_dict().keys()
    assert "prior.pseudo_inputs" in keys and not any(k.startswith("prior.") and "encoder" in k for k in keys)
    assert len(list(vae.parameters())) == len({id(p) for p in vae.parameters()})


def test_vamp_prior_outside_a_vae_says_what_is_missing():
    with pytest.raises(RuntimeError, match="needs the encoder"):
        VampPrior(2, SHAPE).log_prob(torch.zeros(1, 2))


@pytest.mark.parametrize("prior", [MixtureOfGaussians(2, components=3), _vamp_vae()[2]])
def test_samples_follow_the_prior(prior):
    """Samples are reproducible from the generator and lie where the density is high."""
    a = prior.sample(4000, torch.Generator().manual_seed(0))
    b = prior.sample(4000, torch.Generator().manual_seed(0))
    assert a.shape == (4000, 2) and torch.equal(a, b)
    with torch.no_grad():
        far = prior.log_prob(a + 50.0).mean()
        assert prior.log_prob(a).mean() > far + 100  # the samples sit where the density is


@pytest.mark.parametrize("prior", options("prior"))
@pytest.mark.parametrize("kl", options("kl"))
def test_every_prior_with_every_kl_schedule(prior, kl):
    cfg = compose_config([*TINY, f"prior={prior}", f"kl={kl}"])
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    terms = model(data.batch("train", torch.arange(8)))
    penalty = build("penalty", cfg.penalty, dataset_size=data.size("train"))
    loss, _ = objective(terms, penalty, build("kl", cfg.kl, total_steps=10).weight(3), step=3)
    loss.backward()
    assert torch.isfinite(loss)
    assert terms.kl.shape == ((8, cfg.latent_dim) if model.prior.analytic_kl else (8, 1))


@pytest.mark.parametrize("prior", options("prior"))
def test_every_prior_trains_and_evaluates(prior, tiny_run, tmp_path, capsys):
    overrides = [*TINY, f"prior={prior}", *(["prior.components=4"] if prior != "normal" else [])]
    if compose_config(overrides) == tiny_run.cfg:  # the default prior: a copy of the session's run (vae-eval writes)
        run_dir = Path(shutil.copytree(tiny_run.dir, tmp_path / "run"))
    else:
        run_dir = trained_run(tmp_path / "run", overrides).dir
    evaluate.main([f"run={run_dir}", *TINY_EVAL])
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["iwae_nll"] <= -result["elbo"]
    assert result["kl_estimate"] == ("analytic" if prior == "normal" else "single-sample Monte-Carlo")
    assert set(result["figures"]) == {f"figures/test_{n}.png" for n in EVAL_FIGURES}
    for f in result["figures"]:
        assert (run_dir / f).stat().st_size > 1000, f
    assert "Monte-Carlo" in capsys.readouterr().out or prior == "normal"


class ShiftedNormal(Prior):
    """A user's own factorised prior, p(z_j) = N(z_j; 3, 1): neither vae_lab's nor the standard normal."""

    def log_prob_per_dim(self, z):
        return normal_log_prob(z, torch.full_like(z, 3.0), torch.zeros_like(z))

    def log_prob(self, z):
        return self.log_prob_per_dim(z).sum(1)

    def sample(self, n, generator):
        return 3.0 + torch.randn(n, self.latent_dim, generator=generator, device=generator.device)


def test_a_factorised_prior_of_ones_own_is_decomposed_against_itself(tmp_path):
    """measure()'s dimension-wise KL and the beta-TCVAE's are taken against the prior's own p(z_j), not N(0, I)."""
    cfg = compose_config([*TINY, "dataset=sprites"])
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    shifted = VAE(model.encoder, model.decoder, model.likelihood, ShiftedNormal(cfg.latent_dim))
    standard, own = (measure(m, data, "val", 64, 64) for m in (model, shifted))
    # codes near 0 against N(3, 1): about 3² / 2 nats per dimension more than against N(0, 1)
    assert own["dimwise_kl"] - standard["dimwise_kl"] == pytest.approx(4.5 * cfg.latent_dim, rel=0.2)
    assert own["index_code_mi"] == standard["index_code_mi"]  # the terms that do not involve the prior
    assert own["total_correlation"] == standard["total_correlation"]
    terms = shifted(data.batch("train", torch.arange(32)), torch.Generator().manual_seed(0))
    tc_own = build("penalty", OmegaConf.create({"_target_": "vae_lab.penalties.TCVAE"}), dataset_size=256,
                   prior=shifted.prior)
    tc_standard = build("penalty", OmegaConf.create({"_target_": "vae_lab.penalties.TCVAE"}), dataset_size=256,
                        prior=model.prior)
    own_kl = tc_own(terms, 1.0, 0)[1]["gamma_dimwise_kl"]
    standard_kl = tc_standard(terms, 1.0, 0)[1]["gamma_dimwise_kl"]
    assert float((own_kl - standard_kl).detach()) == pytest.approx(4.5 * cfg.latent_dim, rel=0.2)


def test_tcvae_refuses_a_prior_that_does_not_factorise():
    cfg = compose_config([*TINY, "prior=mog", "penalty=tcvae"])
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    with pytest.raises(ConfigError, match="penalty: needs a factorised prior for its dimension-wise KL: MixtureOfGaussians is not one"):
        build("penalty", cfg.penalty, dataset_size=256, prior=model.prior)
