"""How the KL term enters the training objective: the `penalty` group. The `kl` group's schedule gives the weight.

A penalty turns the per-image KL (and, for the decomposed ones, the codes of the batch) into the part of the loss
that is added to −log p(x|z). Its main coefficient is the schedule's weight w(step) — β for the β-VAE, the
β-TCVAE's β on the total correlation, the multiplier of γ for capacity — so `kl=linear` warms up any penalty and one
`kl.beta` sweep spans them all. The ELBO that is reported never depends on the penalty.
"""
import math

import torch
from torch import nn

from vae_lab.checks import ConfigError, choice, number
from vae_lab.priors import normal_log_prob, standard_normal_log_prob
from vae_lab.stacking import Stacked

ESTIMATORS = ("mss", "mws")  # of the aggregate posterior q(z) from one batch: minibatch-stratified or -weighted


class Penalty(nn.Module):
    """Base of the `penalty` group. Built as `Penalty(dataset_size=N, latent_dim=D, prior=<the model's prior>,
    **config)`: every option takes the three (and keeps the prior's weights out of its own state_dict).

    `forward(terms, weight, step)` returns (scalar loss part, {name: scalar tensor}): the weighted terms it added,
    logged as train/<name> (their sum is the loss part). `names` lists those names, fixed when it is built, so
    that the loop can keep them on the device with the other per-step terms. A penalty with parameters of its
    own (an adversarial one, such as FactorVAE's discriminator) trains them in `update(terms, step, generator)`,
    which the loop calls after each optimiser step of the VAE with the penalty's own random stream (saved in the
    checkpoint with the others); it returns {name: scalar tensor} for the names in `update_names`, logged as
    train/<name> too. The penalty's state_dict (parameters and optimiser) is saved in the checkpoint. `min_batch` is the
    fewest images a batch may hold for its batch statistics to mean what they say (the loop leaves out an epoch's
    last batch when it holds fewer).
    """

    names: tuple = ("kl_penalty",)
    update_names: tuple = ()
    min_batch: int = 1

    def __init__(self, dataset_size=None, latent_dim=None, prior=None):
        super().__init__()
        self.dataset_size, self.latent_dim = dataset_size, latent_dim

    def forward(self, terms, weight, step):
        raise NotImplementedError

    def update(self, terms, step, generator=None):
        """Called after each optimiser step of the VAE; penalties without parameters of their own do nothing."""
        return {}

    @classmethod
    def stack_updates(cls, penalties):
        """What a stack of models (hydra/launcher=stacked) calls after each of its steps for the members' penalties
        (`penalties`, one per member): by default each member's own update(), one after another."""
        return EachUpdate(penalties)


class EachUpdate:
    """Each member's update() in turn: `(each member's terms, step, each member's generator)` -> their figures."""

    def __init__(self, penalties):
        self.penalties = penalties

    def __call__(self, terms, step, generators):
        return [p.update(t, step, g) for p, t, g in zip(self.penalties, terms, generators)]

    def sync(self):
        """Nothing to copy: the members' own modules hold their state."""


class KL(Penalty):
    """w · KL(q(z|x) || p(z)), mean over the batch: w = 1 is the ELBO, w = β > 1 the β-VAE (Higgins et al. 2017)."""

    def forward(self, terms, weight, step):
        part = weight * terms.kl.sum(1).mean()
        return part, {"kl_penalty": part}


class Capacity(Penalty):
    """Controlled capacity (Burgess et al. 2018, eq. 8): w · γ · |KL − C(step)|, C rising linearly from 0 to
    `c_max` nats over `ramp_steps`. With kl.beta = 1 (a constant schedule) w · γ is the paper's γ."""

    names = ("capacity_penalty", "capacity")

    def __init__(self, gamma=1000.0, c_max=25.0, ramp_steps=100_000, dataset_size=None, latent_dim=None, prior=None):
        super().__init__(dataset_size, latent_dim)
        self.gamma = number("gamma", gamma, low=0)
        self.c_max = number("c_max", c_max, low=0)
        self.ramp_steps = number("ramp_steps", ramp_steps, low=1, integer=True)

    def capacity(self, step):
        return self.c_max * min(1.0, step / self.ramp_steps)

    def forward(self, terms, weight, step):
        c = self.capacity(step)
        part = weight * self.gamma * (terms.kl.sum(1).mean() - c).abs()
        return part, {"capacity_penalty": part, "capacity": part.new_tensor(c)}


class FreeBits(Penalty):
    """Free bits (Kingma et al. 2016, eq. 15): w · Σ_j max(λ, batch-mean KL_j), λ = `free_nats` per latent dimension.
    Dimensions below λ get no gradient from the KL; for priors whose KL does not split, λ applies to the total."""

    def __init__(self, free_nats=0.5, dataset_size=None, latent_dim=None, prior=None):
        super().__init__(dataset_size, latent_dim)
        self.free_nats = number("free_nats", free_nats, low=0)

    def forward(self, terms, weight, step):
        part = weight * torch.clamp(terms.kl.mean(0), min=self.free_nats).sum()
        return part, {"kl_penalty": part}


class TCVAE(Penalty):
    """β-TCVAE (Chen et al. 2018, eq. 4): α · I(z; n) + β · TC(z) + γ · Σ_j KL(q(z_j) || p(z_j)), with β = w(step).

    The three terms are the minibatch estimates of `minibatch_terms` (`estimator`: mss, minibatch-stratified
    sampling, or mws, minibatch-weighted sampling) over the batch, with N the training set's size, and the
    dimension-wise KL against the prior's own p(z_j), so it needs a factorised prior. With α = β = γ = 1 the
    objective is the ELBO's, up to the estimators' error.

    The three estimates sum to the single-sample KL, log q(z|x) − log p(z) (the log q(z) terms cancel), so the same
    objective can be written as KL + (α − 1) · MI + (β − 1) · TC + (γ − 1) · dim-KL. `kl_estimate: analytic` does so
    with the closed-form KL: disentanglement_lib's β-TCVAE (methods/unsupervised/vae.py, BetaTCVAE: the analytic KL
    + (β − 1) · TC, with α = γ = 1 and the minibatch-weighted TC). Its expectation is the same as `sampled`'s; its
    variance is lower, the KL's Monte-Carlo noise gone.
    """

    names = ("alpha_mi", "beta_tc", "gamma_dimwise_kl")  # kl_estimate: analytic logs ANALYTIC_NAMES

    ANALYTIC_NAMES = ("kl_penalty", "alpha_minus_1_mi", "beta_minus_1_tc", "gamma_minus_1_dimwise_kl")

    min_batch = 2  # log q(z_i) is estimated from the other codes of the batch

    def __init__(self, alpha=1.0, gamma=1.0, estimator="mss", kl_estimate="sampled", dataset_size=None,
                 latent_dim=None, prior=None):
        super().__init__(dataset_size, latent_dim)
        self.alpha = number("alpha", alpha, low=0)
        self.gamma = number("gamma", gamma, low=0)
        self.estimator = choice("estimator", estimator, ESTIMATORS)
        self.kl_estimate = choice("kl_estimate", kl_estimate, ("sampled", "analytic"))
        number("dataset_size", dataset_size, low=2, integer=True)
        if prior is not None and not prior.factorised:
            raise ConfigError(f"needs a factorised prior for its dimension-wise KL: {type(prior).__name__} is not "
                              "one; use prior=normal")
        # a bound method, not the prior module itself, so that the prior's weights stay out of this state_dict
        self.log_prob_per_dim = standard_normal_log_prob if prior is None else prior.log_prob_per_dim
        if self.kl_estimate == "analytic":
            self.names = self.ANALYTIC_NAMES

    def forward(self, terms, weight, step):
        mi, tc, dim_kl = minibatch_terms(terms.z, terms.mean, terms.log_var, self.dataset_size, self.estimator,
                                         self.log_prob_per_dim)
        if self.kl_estimate == "sampled":
            parts = {"alpha_mi": self.alpha * mi, "beta_tc": weight * tc, "gamma_dimwise_kl": self.gamma * dim_kl}
        else:
            parts = {"kl_penalty": terms.kl.sum(1).mean(), "alpha_minus_1_mi": (self.alpha - 1) * mi,
                     "beta_minus_1_tc": (weight - 1) * tc, "gamma_minus_1_dimwise_kl": (self.gamma - 1) * dim_kl}
        return sum(parts.values()), parts


class DIP(Penalty):
    """DIP-VAE (Kumar et al. 2018, eqs. 6-7): w · KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)², where C is the
    batch covariance of the posterior means (DIP-VAE-I) or of the aggregate posterior (DIP-VAE-II:
    Cov[μ] + E[diag σ²]), and λ_d = `lambda_d_factor` · λ_od.

    As disentanglement_lib (methods/unsupervised/vae.py, DIPVAE and compute_covariance_z_mean): λ_d is a factor
    times λ_od (its study: 10 for DIP-VAE-I, 1 for DIP-VAE-II), so a sweep over λ_od keeps their ratio; and C is
    E[μμᵀ] − E[μ]E[μ]ᵀ over the batch, i.e. divided by B, not B − 1.
    """

    names = ("kl_penalty", "dip_off_diagonal", "dip_diagonal")

    min_batch = 2  # the covariance of one image's code is 0

    def __init__(self, variant="i", lambda_od=10.0, lambda_d_factor=10.0, lambda_d=None, dataset_size=None,
                 latent_dim=None, prior=None):
        super().__init__(dataset_size, latent_dim)
        if lambda_d is not None:  # the absolute key of configs written before lambda_d_factor
            raise ConfigError(f"lambda_d={lambda_d}: replaced by lambda_d_factor (lambda_d = lambda_d_factor * "
                              "lambda_od, as disentanglement_lib); set penalty.lambda_d_factor to lambda_d / lambda_od "
                              "instead")
        self.variant = choice("variant", variant, ("i", "ii"))
        self.lambda_od = number("lambda_od", lambda_od, low=0)
        self.lambda_d_factor = number("lambda_d_factor", lambda_d_factor, low=0)
        self.lambda_d = self.lambda_d_factor * self.lambda_od

    def forward(self, terms, weight, step):
        mean = terms.mean  # (B, D)
        centred = mean - mean.mean(0, keepdim=True)
        cov = centred.T @ centred / mean.shape[0]  # (D, D), Cov_batch[E_q(z|x) z], over B as disentanglement_lib
        if self.variant == "ii":
            cov = cov + torch.diag(terms.log_var.exp().mean(0))  # + E_x[Cov_q(z|x) z]
        diag = torch.diagonal(cov)
        parts = {"kl_penalty": weight * terms.kl.sum(1).mean(),
                 "dip_off_diagonal": self.lambda_od * (cov.pow(2).sum() - diag.pow(2).sum()),
                 "dip_diagonal": self.lambda_d * (diag - 1).pow(2).sum()}
        return sum(parts.values()), parts


class FactorVAE(Penalty):
    """FactorVAE (Kim & Mnih 2018, eq. 2): w · KL + γ · TC, the total correlation estimated with the density-ratio
    trick by a discriminator D on the codes: TC(z) ≈ E_q(z)[log D(z) − log(1 − D(z))], the mean over the batch of
    the difference of D's two logits (eq. 3; disentanglement_lib methods/unsupervised/vae.py, FactorVAE.model_fn).

    D is trained in `update()` to tell codes z ~ q(z) (class 0) from the same batch's codes with each dimension
    permuted across the batch (class 1, samples of the product of q's marginals; Kim & Mnih's Algorithm 1,
    `shuffle_codes` in disentanglement_lib): cross-entropy with both halves weighted ½, its own Adam. We follow
    disentanglement_lib in permuting the batch the VAE trained on, at the same step, rather than the paper's second
    batch: the second batch would need a second data path through the loop, and disentanglement_lib's study is what
    results are compared against. D's parameters before this step score the VAE's codes, as there.

    D (methods/shared/architectures.py, fc_discriminator; the paper's Appendix A): `depth` fully connected layers
    of `width` units with leaky ReLU (slope 0.2), then 2 logits; Glorot-uniform weights and zero biases as TF's
    dense layers start. Its optimiser: Adam(lr, betas), disentanglement_lib's 1e-4, (0.5, 0.9).
    The VAE's gradient never reaches D (D scores the VAE's codes with its parameters detached) and D's step
    never touches the VAE (it trains on detached codes). With γ = 0 the loss is the KL penalty's exactly.
    """

    names = ("kl_penalty", "gamma_tc")
    update_names = ("discriminator_loss", "discriminator_accuracy")

    min_batch = 2  # permuting a batch of one code across the batch leaves it as it is

    def __init__(self, gamma=40.0, depth=6, width=1000, lr=1e-4, betas=(0.5, 0.9), dataset_size=None,
                 latent_dim=None, prior=None):
        super().__init__(dataset_size, latent_dim)
        self.gamma = number("gamma", gamma, low=0)
        depth, width = number("depth", depth, low=1, integer=True), number("width", width, low=1, integer=True)
        number("latent_dim", latent_dim, low=1, integer=True)
        layers, size = [], latent_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
            size = width
        self.discriminator = nn.Sequential(*layers, nn.Linear(size, 2))
        for layer in self.discriminator:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        betas = tuple(betas) if betas is not None and len(betas) == 2 else None
        if betas is None or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"betas={betas}: two numbers in [0, 1), e.g. [0.5, 0.9]")
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=number("lr", lr, low=0), betas=betas)

    def total_correlation(self, z):
        """The batch mean of D's logit difference on z, with D's parameters detached: the VAE's TC estimate."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, params, (z,)).float()
        return (logits[:, 0] - logits[:, 1]).mean()

    def forward(self, terms, weight, step):
        parts = {"kl_penalty": weight * terms.kl.sum(1).mean(), "gamma_tc": self.gamma * self.total_correlation(terms.z)}
        return sum(parts.values()), parts

    def update(self, terms, step, generator=None):
        z = terms.z.detach().float()
        loss, accuracy = self.discriminator_loss(z, permute_dims(z, generator))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"discriminator_loss": loss.detach(), "discriminator_accuracy": accuracy}

    def discriminator_loss(self, z, permuted, params=None):
        """(cross-entropy of D on codes z (class 0) and permuted codes (class 1), its accuracy); `params` replace D's
        own (a stack's, vmapped)."""
        both = torch.cat([z, permuted])
        logits = self.discriminator(both) if params is None else torch.func.functional_call(self.discriminator, params, (both,))
        target = torch.cat([z.new_zeros(len(z), dtype=torch.long), z.new_ones(len(z), dtype=torch.long)])
        loss = nn.functional.cross_entropy(logits, target)  # ½ mean over each half: the halves are the same size
        return loss, (logits.detach().argmax(1) == target).float().mean()

    @classmethod
    def stack_updates(cls, penalties):
        return StackedDiscriminators(penalties)

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])


class StackedDiscriminators:
    """The discriminators of a stack's FactorVAE penalties stepped as one: their parameters stacked
    (vae_lab.stacking), the cross-entropy vmapped over the members, one Adam (the members' lr and betas: a stack's
    members share them) over the stacked tensors, i.e. one Adam per member. The permutations are drawn from each
    member's own stream outside the vmapped function, as its lone run draws them. Each member's discriminator holds
    views of the stacked parameters, so its forward (the VAE's TC estimate) reads them as they are trained; `sync`
    copies the stacked Adam's state into each member's own, for its checkpoint in the lone format."""

    def __init__(self, penalties):
        self.penalties, lead = penalties, penalties[0]
        size, width = len(penalties), lead.discriminator[0].in_features

        def probe(params, buffers):
            z = torch.zeros(size, 2, width, device=next(iter(params.values())).device)
            return torch.func.vmap(lambda p, z: lead.discriminator_loss(z, z, p)[0])(params, z).sum()

        self.stacked = Stacked([p.discriminator for p in penalties], probe)
        group = lead.optimizer.param_groups[0]
        self.optimizer = torch.optim.Adam(self.stacked.stored.values(), lr=group["lr"], betas=group["betas"])
        self.optimizer.load_state_dict(self.stacked.optimizer_state([p.optimizer.state_dict() for p in penalties]))
        params = self.stacked.params()
        with torch.no_grad():
            for i, p in enumerate(penalties):  # each member's D reads the stacked values
                for name, param in p.discriminator.named_parameters():
                    param.data = params[name][i]

    def __call__(self, terms, step, generators):
        z = torch.stack([t.z.detach().float() for t in terms])
        order = torch.stack([torch.rand(t.z.shape, generator=g, device=z.device) for t, g in zip(terms, generators)])
        permuted = z.gather(1, order.argsort(1))  # permute_dims, member by member
        lead = self.penalties[0]
        loss, accuracy = torch.func.vmap(lambda p, z, q: lead.discriminator_loss(z, q, p))(
            self.stacked.params(), z, permuted)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # each member's gradient is its own loss's
        self.optimizer.step()
        return [{"discriminator_loss": loss[i].detach(), "discriminator_accuracy": accuracy[i]}
                for i in range(len(terms))]

    def sync(self):
        for p, state in zip(self.penalties, self.stacked.module_states(self.optimizer.state_dict())):
            p.optimizer.load_state_dict(state)

def permute_dims(z, generator=None):
    """z (B, D) with each column permuted across the batch independently: a sample of the product of the marginals
    of the codes' distribution (Kim & Mnih 2018, Algorithm 1). One draw of B × D uniforms from `generator`."""
    order = torch.rand(z.shape, generator=generator, device=z.device).argsort(0)
    return z.gather(0, order)


# ---- the β-TCVAE's minibatch estimates of the KL decomposition (vae_lab.measure.decomposition: over all images)

def log_weight_matrix(batch_size, dataset_size, estimator="mss", dtype=torch.float32, device=None):
    """log w_ij, (M, M): log q(z_i) is estimated as logsumexp_j [log w_ij + log q(z_i | n_j)] over a batch of M."""
    m, n = batch_size, dataset_size
    if estimator == "mws":
        # Chen et al. 2018, Sec. 4.1 (MWS): q(z_i) ~ 1/(N M) sum_j q(z_i | n_j), as the paper defines it
        return torch.full((m, m), -math.log(n * m), dtype=dtype, device=device)
    if estimator != "mss":
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    if m < 2 or n < m:
        raise ValueError(f"MSS needs 2 <= batch size <= dataset size; got batch {m}, dataset {n}")
    # Minibatch-stratified sampling (Chen et al. 2018, appendix), with equal weights on the other members:
    #   q(z_i) = 1/N q(z_i | n_i) + 1/N sum_{n != n_i} q(z_i | n)
    #         ~ 1/N q(z_i | n_i) + (N-1)/(N (M-1)) sum_{j != i} q(z_i | n_j).
    # The M-1 other members of a batch drawn without replacement are each a uniform draw from the N-1 other images,
    # so the second sum is unbiased for the first; and of all weightings with that property, equal weights on
    # exchangeable draws have the least variance. With M = N (the whole data set) every weight is 1/N and this is
    # exactly the full-data estimate. Each row sums to 1; weights depend only on M and N.
    # rtqichen/beta-tcvae's weight matrix differs on its diagonal: docs/decomposition.md says how and what it changes.
    log_w = torch.full((m, m), math.log((n - 1) / (n * (m - 1))), dtype=dtype, device=device)
    return log_w.fill_diagonal_(-math.log(n))


def minibatch_terms(z, mean, log_var, dataset_size, estimator="mss", log_prob_per_dim=standard_normal_log_prob):
    """(MI, TC, dim-KL), scalar tensors averaged over the batch, from z (M, D), z_i ~ q(z|n_i), and its posteriors.

    Differentiable and in the batch's dtype: the terms of a β-TCVAE objective (Chen et al. 2018, Sec. 4). dataset_size
    is N, the number of images the batch is drawn from; estimator one of ESTIMATORS (docs/decomposition.md: each
    one's bias). log_prob_per_dim(z) -> (M, D) is a factorised prior's log p(z_j) (Prior.log_prob_per_dim).
    """
    m = z.shape[0]
    log_q_own = normal_log_prob(z, mean, log_var).sum(1)  # (M,) log q(z_i | n_i)
    log_q = normal_log_prob(z[:, None, :], mean[None], log_var[None])  # (M, M, D) log q(z_id | n_j)
    log_w = log_weight_matrix(m, dataset_size, estimator, dtype=z.dtype, device=z.device)  # (M, M)
    log_qz = torch.logsumexp(log_w + log_q.sum(2), dim=1)  # (M,) log q(z_i)
    log_qz_dims = torch.logsumexp(log_w[:, :, None] + log_q, dim=1)  # (M, D) log q(z_id), same weights per dimension
    log_p = log_prob_per_dim(z)  # (M, D) log p(z_id)
    mi = (log_q_own - log_qz).mean()
    tc = (log_qz - log_qz_dims.sum(1)).mean()
    dimwise_kl = (log_qz_dims - log_p).sum(1).mean()
    return mi, tc, dimwise_kl
