"""The published-settings presets (configs/experiment/) train two steps on tiny data, hold the values of their
sources, and the layers they need (activations by name, TensorFlow-'same' convolutions, warm-up in epochs, dSprites'
factor values) do what those sources do."""
import math

import pytest
import torch
from helpers import compose_config, options, trained_run
from omegaconf import OmegaConf
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from vae_lab.checks import ConfigError
from vae_lab.model import VAE
from vae_lab.networks import SameConv2d, SameConvTranspose2d, same_padding
from vae_lab.runtime.build import build, build_model, build_optimizer

SPRITES, MNIST = "vae_lab.data.sprites.Sprites", "vae_lab.data.mnist_like.MNIST"
MLP_ENC, MLP_DEC = "vae_lab.encoders.MLPEncoder", "vae_lab.decoders.MLPDecoder"
CONV_ENC, CONV_DEC = "vae_lab.encoders.SameConvEncoder", "vae_lab.decoders.SameConvDecoder"
HIGGINS_MLP = {"encoder._target_": MLP_ENC, "encoder.hidden": [1200, 1200], "encoder.activation": "ReLU",
               "decoder._target_": MLP_DEC, "decoder.hidden": [1200, 1200, 1200], "decoder.activation": "Tanh"}
BERNOULLI = "vae_lab.likelihoods.Bernoulli"
TOMCZAK = {"dataset._target_": MNIST, "dataset.binarize": "dynamic", "dataset.val_size": 10_000, "latent_dim": 40,
           "encoder.hidden": [300, 300], "decoder.hidden": [300, 300], "likelihood._target_": BERNOULLI,
           "kl._target_": "vae_lab.kl_schedules.Linear", "kl.beta": 1.0, "kl.start": 0.0, "kl.warmup_epochs": 100,
           "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 5e-4, "trainer.batch_size": 100,
           "trainer.epochs": 2000, "trainer.max_steps": None}

# Each preset's settings, written down from its source (the preset's comment names it), not read from the preset.
SOURCES = {
    "higgins_beta_vae": {  # Higgins et al. 2017, appendix A.1, Table 1
        "dataset._target_": SPRITES, "latent_dim": 10, **HIGGINS_MLP, "likelihood._target_": BERNOULLI,
        "kl._target_": "vae_lab.kl_schedules.Constant", "kl.beta": 4.0, "penalty._target_": "vae_lab.penalties.KL",
        "optimizer._target_": "torch.optim.Adagrad", "optimizer.lr": 1e-2},
    "chen_tcvae": {  # rtqichen/beta-tcvae, vae_quant.py
        "dataset._target_": SPRITES, "latent_dim": 10, **HIGGINS_MLP, "likelihood._target_": BERNOULLI,
        "penalty._target_": "vae_lab.penalties.TCVAE", "penalty.estimator": "mss", "penalty.alpha": 1.0,
        "penalty.gamma": 1.0, "kl._target_": "vae_lab.kl_schedules.Constant", "kl.beta": 6.0,
        "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 1e-3, "trainer.batch_size": 2048,
        "trainer.epochs": 50, "trainer.max_steps": None},
    "burgess_capacity": {  # Burgess et al. 2018, as commonly reproduced
        "dataset._target_": SPRITES, "latent_dim": 10, "likelihood._target_": BERNOULLI,
        "penalty._target_": "vae_lab.penalties.Capacity", "penalty.gamma": 1000.0, "penalty.c_max": 25.0,
        "penalty.ramp_steps": 100_000, "kl._target_": "vae_lab.kl_schedules.Constant", "kl.beta": 1.0,
        "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 5e-4, "trainer.batch_size": 64,
        "encoder._target_": CONV_ENC, "encoder.hidden": [32] * 4, "encoder.kernel": 4, "encoder.fc": [256, 256],
        "decoder._target_": CONV_DEC, "decoder.hidden": [32] * 4, "decoder.kernel": 4, "decoder.fc": [256, 256]},
    "locatello": {  # disentanglement_lib: unsupervised_study_v1/model_configs/shared.gin, shared/architectures.py
        "dataset._target_": SPRITES, "latent_dim": 10, "likelihood._target_": BERNOULLI,
        "penalty._target_": "vae_lab.penalties.KL", "kl._target_": "vae_lab.kl_schedules.Constant",
        "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 1e-4, "optimizer.betas": [0.9, 0.999],
        "optimizer.eps": 1e-8, "trainer.batch_size": 64, "trainer.max_steps": 300_000,
        "encoder._target_": CONV_ENC, "encoder.hidden": [32, 32, 64, 64], "encoder.kernel": [4, 4, 2, 2],
        "encoder.fc": [256], "decoder._target_": CONV_DEC, "decoder.fc": [256], "decoder.hidden": [64, 64, 32, 32],
        "decoder.kernel": 4},
    "burda_vae": {  # Burda et al. 2016, sec. 5
        "dataset._target_": MNIST, "dataset.binarize": "dynamic", "latent_dim": 50, "encoder._target_": MLP_ENC,
        "encoder.hidden": [200, 200], "encoder.activation": "Tanh", "decoder._target_": MLP_DEC,
        "decoder.hidden": [200, 200], "decoder.activation": "Tanh", "likelihood._target_": BERNOULLI,
        "kl.beta": 1.0, "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 1e-3,
        "optimizer.betas": [0.9, 0.999], "optimizer.eps": 1e-4, "scheduler._target_": "vae_lab.schedulers.EpochPhases",
        "scheduler.base": 3, "scheduler.phases": 7, "scheduler.decay": 0.1, "trainer.batch_size": 20,
        "trainer.epochs": 3280, "trainer.max_steps": None},
    "tomczak_vampprior": {  # jmtomczak/vae_vampprior, experiment.py
        **TOMCZAK, "prior._target_": "vae_lab.priors.VampPrior", "prior.components": 500},
    "tomczak_standard": {**TOMCZAK, "prior._target_": "vae_lab.priors.StandardNormal"},
}

# Locatello et al. 2019's six models, written down from google-research/disentanglement_lib at commit 86a644d, not
# read from the presets: (the values each fixes, the key it sweeps, its grid). Grids and fixed values:
# config/unsupervised_study_v1/sweep.py, get_default_models (line numbers below); the shared settings are
# SOURCES["locatello"] (model_configs/shared.gin); the objectives: methods/unsupervised/vae.py, whose KL weight is 1
# for every model but the beta-VAE.
STUDY = {
    "locatello_beta_vae": (  # sweep.py:55-57, vae.beta; vae.py BetaVAE
        {"penalty._target_": "vae_lab.penalties.KL"}, "kl.beta", [1, 2, 4, 6, 8, 16]),
    "locatello_annealed_vae": (  # sweep.py:61-65: gamma 1000, iteration_threshold 100000, c_max; vae.py AnnealedVAE
        {"penalty._target_": "vae_lab.penalties.Capacity", "penalty.gamma": 1000, "penalty.ramp_steps": 100_000,
         "kl.beta": 1}, "penalty.c_max", [5, 10, 25, 50, 75, 100]),
    "locatello_factor_vae": (  # sweep.py:70-75, factor_vae.gamma; shared.gin:31-36, the discriminator's Adam;
        # methods/shared/architectures.py, fc_discriminator: 6 dense layers of 1000 units
        {"penalty._target_": "vae_lab.penalties.FactorVAE", "penalty.depth": 6, "penalty.width": 1000,
         "penalty.lr": 1e-4, "penalty.betas": [0.5, 0.9], "kl.beta": 1}, "penalty.gamma", [10, 20, 30, 40, 50, 100]),
    "locatello_dip_vae_i": (  # sweep.py:79-84: lambda_od, lambda_d_factor 10, dip_type i
        {"penalty._target_": "vae_lab.penalties.DIP", "penalty.variant": "i", "penalty.lambda_d_factor": 10,
         "kl.beta": 1}, "penalty.lambda_od", [1, 2, 5, 10, 20, 50]),
    "locatello_dip_vae_ii": (  # sweep.py:89-94: lambda_od, lambda_d_factor 1, dip_type ii
        {"penalty._target_": "vae_lab.penalties.DIP", "penalty.variant": "ii", "penalty.lambda_d_factor": 1,
         "kl.beta": 1}, "penalty.lambda_od", [1, 2, 5, 10, 20, 50]),
    "locatello_beta_tcvae": (  # sweep.py:99-101, beta_tc_vae.beta; vae.py BetaTCVAE: analytic KL + (beta - 1) * TC,
        # the TC by minibatch-weighted sampling (total_correlation)
        {"penalty._target_": "vae_lab.penalties.TCVAE", "penalty.alpha": 1, "penalty.gamma": 1,
         "penalty.estimator": "mws", "penalty.kl_estimate": "analytic"}, "kl.beta", [1, 2, 4, 6, 8, 10]),
}


def test_the_study_presets_are_the_six_models():
    assert set(STUDY) == {name for name in options("experiment") if name.startswith("locatello_")}


@pytest.mark.parametrize("name", sorted(STUDY))
def test_study_preset_holds_disentanglement_libs_values_and_grid(name):
    """The shared settings, the model's fixed values, and its grid as the sweeper's params, so that
    `vae-train -m experiment=<name> seed=0,1,2` runs the grid for each seed."""
    fixed, key, grid = STUDY[name]
    cfg = compose_config([f"experiment={name}"], return_hydra_config=True)
    for k, value in {**SOURCES["locatello"], **fixed}.items():
        found = OmegaConf.select(cfg, k, default="<missing>")
        assert (OmegaConf.to_container(found) if OmegaConf.is_config(found) else found) == value, (name, k)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert list(params) == [key], name
    assert [float(v) for v in str(params[key]).split(",")] == grid, name
    assert OmegaConf.select(cfg, key) in grid  # a run without -m takes one of the grid's values
    build("penalty", cfg.penalty, dataset_size=1000, latent_dim=cfg.latent_dim)  # the values are legal


def test_every_published_preset_has_its_source_here():
    assert set(SOURCES) <= set(options("experiment"))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_preset_holds_its_sources_values(name):
    cfg = compose_config([f"experiment={name}"])
    for key, value in SOURCES[name].items():
        assert OmegaConf.select(cfg, key, default="<missing>") == value, (name, key)


def _tiny(name, data_dir):
    """Overrides that put preset `name` on a tiny slice of its data set: sprites' own splits, or the small IDX files
    of the idx_data_dir fixture."""
    sprites = compose_config([f"experiment={name}"]).dataset._target_ == SPRITES
    sizes = ["dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64"] if sprites else ["dataset.val_size=100"]
    return [f"experiment={name}", f"data_dir={data_dir}", *sizes]


@pytest.mark.slow
@pytest.mark.parametrize("name", options("experiment"))
def test_preset_trains_two_steps(name, idx_data_dir, tmp_path):
    """Each preset on a tiny slice of its data set through the training loop, which builds its data, model, optimizer,
    learning-rate scheduler, KL schedule (with the loop's steps_per_epoch) and penalty: two steps with a finite loss
    change the parameters and leave a checkpoint."""
    initial = {}

    def keep_initial(module, _inputs):  # the model's first forward comes before any update
        if isinstance(module, VAE) and not initial:
            initial.update({k: v.detach().clone() for k, v in module.state_dict().items()})

    hook = register_module_forward_pre_hook(keep_initial)
    try:
        run = trained_run(tmp_path / "run", [*_tiny(name, idx_data_dir), "trainer.max_steps=2", "eval.max_images=50"])
    finally:
        hook.remove()
    assert run.cfg.trainer.nonfinite == "stop"  # so a non-finite loss would have ended the run as diverged
    assert run.summary["status"] == "completed" and run.summary["steps"] == 2 and math.isfinite(run.summary["elbo"])
    trained = torch.load(run.dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert initial.keys() == trained.keys() and any(not torch.equal(initial[k], trained[k]) for k in initial)
    if "warmup_epochs" in run.cfg.kl:  # Tomczak & Welling's 100 epochs, in steps of this run
        data = build("dataset", run.cfg.dataset)
        steps_per_epoch = math.ceil(data.size("train") / run.cfg.trainer.batch_size)
        schedule = build("kl", run.cfg.kl, total_steps=10, steps_per_epoch=steps_per_epoch)
        assert schedule.warmup_steps == run.cfg.kl.warmup_epochs * steps_per_epoch


def _model(name):
    """A sprites preset's config and model."""
    cfg = compose_config(_tiny(name, "unused"))
    return cfg, build_model(cfg, build("dataset", cfg.dataset))


def test_higgins_networks_and_optimizer():
    cfg, model = _model("higgins_beta_vae")
    enc = [m for m in model.encoder.modules() if isinstance(m, (nn.Linear, nn.ReLU, nn.Tanh))]
    assert [(m.in_features, m.out_features) for m in enc if isinstance(m, nn.Linear)] == [
        (4096, 1200), (1200, 1200), (1200, 20)]
    assert sum(isinstance(m, nn.ReLU) for m in enc) == 2 and not any(isinstance(m, nn.Tanh) for m in enc)
    dec = list(model.decoder.net)
    assert [type(m) for m in dec] == [nn.Linear, nn.Tanh] * 3 + [nn.Linear]
    assert [(m.in_features, m.out_features) for m in dec if isinstance(m, nn.Linear)] == [
        (10, 1200), (1200, 1200), (1200, 1200), (1200, 4096)]
    assert isinstance(build_optimizer(cfg, model.parameters()), torch.optim.Adagrad)


def test_locatello_encoder_maps_and_kernels():
    """disentanglement_lib's conv_encoder on 64x64: 4x4, 4x4, 2x2, 2x2 stride-2 'same' convolutions to 32x32, 16x16,
    8x8 and 4x4 maps of 32, 32, 64, 64 channels; dense 256; the means and log-variances of 10 latents."""
    _, model = _model("locatello")
    convs = [m for m in model.encoder.features if isinstance(m, SameConv2d)]
    assert [m.kernel_size for m in convs] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    # TensorFlow's 'same' on 64, 32 (4x4) and 16, 8 (2x2) is symmetric: the convolutions' own padding, no F.pad
    assert [(m.stride, m.padding, m.pad) for m in convs] == [((2, 2), (1, 1), None)] * 2 + [((2, 2), (0, 0), None)] * 2
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:]))) for m in convs]
    mean, log_var = model.encoder(torch.rand(2, 1, 64, 64))
    for h in hooks:
        h.remove()
    assert shapes == [(32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]
    dense = [(m.in_features, m.out_features) for m in model.encoder.modules() if isinstance(m, nn.Linear)]
    assert dense == [(64 * 4 * 4, 256), (256, 20)] and mean.shape == log_var.shape == (2, 10)


def test_locatello_decoder_layers():
    """deconv_decoder: dense 256, dense 1024 = 4x4x64, then 4x4 stride-2 transposed convolutions to 64, 32, 32 and
    1 channels (ReLU after all but the last: logits), 4x4 -> 8x8 -> 16x16 -> 32x32 -> 64x64."""
    _, model = _model("locatello")
    layers = list(model.decoder.net)

    def describe(m):
        if isinstance(m, nn.Linear):
            return ("dense", m.in_features, m.out_features)
        if isinstance(m, SameConvTranspose2d):
            return ("deconv", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.out_size)
        if isinstance(m, nn.Unflatten):
            return ("reshape", tuple(m.unflattened_size))
        return type(m).__name__

    assert [describe(m) for m in layers] == [
        ("dense", 10, 256), "ReLU", ("dense", 256, 1024), "ReLU", ("reshape", (64, 4, 4)),
        ("deconv", 64, 64, (4, 4), (2, 2), (8, 8)), "ReLU", ("deconv", 64, 32, (4, 4), (2, 2), (16, 16)), "ReLU",
        ("deconv", 32, 32, (4, 4), (2, 2), (32, 32)), "ReLU", ("deconv", 32, 1, (4, 4), (2, 2), (64, 64))]
    assert model.decoder(torch.randn(3, 10)).shape == (3, 1, 64, 64)


def test_burgess_networks():
    """Burgess et al. 2018 as commonly reproduced: 4 convs of 32 channels 4x4 stride 2, dense 256, 256; the decoder
    dense 256, 256, 512 = 32x4x4 and 4 transposed convs of 32, 32, 32, 1 channels."""
    _, model = _model("burgess_capacity")
    convs = [m for m in model.encoder.features if isinstance(m, SameConv2d)]
    assert [(m.out_channels, m.kernel_size) for m in convs] == [(32, (4, 4))] * 4
    assert [(m.in_features, m.out_features) for m in model.encoder.modules() if isinstance(m, nn.Linear)] == [
        (512, 256), (256, 256), (256, 20)]
    dec = list(model.decoder.net)
    assert [(m.in_features, m.out_features) for m in dec if isinstance(m, nn.Linear)] == [
        (10, 256), (256, 256), (256, 512)]
    assert [(m.out_channels, m.out_size) for m in dec if isinstance(m, SameConvTranspose2d)] == [
        (32, (8, 8)), (32, (16, 16)), (32, (32, 32)), (1, (64, 64))]
    x = torch.rand(2, 1, 64, 64)
    assert model.decoder(model.encoder(x)[0]).shape == x.shape


def test_same_padding_is_tensorflows():
    """tf.nn.convolution, padding='same': out = ceil(in / s), pad = max((out - 1) s + k - in, 0), the odd one after."""
    assert same_padding(64, 4, 2) == (1, 1) and same_padding(16, 2, 2) == (0, 0)
    assert same_padding(7, 2, 2) == (0, 1) and same_padding(28, 3, 2) == (0, 1) and same_padding(5, 4, 2) == (1, 2)
    x = torch.rand(1, 1, 7, 7)
    assert SameConv2d(1, 1, 2, (7, 7))(x).shape[-2:] == (4, 4)


@pytest.mark.parametrize("size,kernel", [(7, 2), (7, 3), (8, 4), (28, 4), (5, 4)])
def test_same_transposed_conv_is_the_adjoint_of_the_same_conv(size, kernel):
    """TensorFlow defines conv2d_transpose as the gradient of conv2d: <conv(x), y> = <x, conv_transpose(y)>."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, (size, size))
    deconv = SameConvTranspose2d(3, 2, kernel, (size, size))
    with torch.no_grad():
        deconv.weight.copy_(conv.weight)  # (3, 2, k, k): conv's (out, in) is the transpose's (in, out)
        conv.bias.zero_()
        deconv.bias.zero_()
    x = torch.randn(1, 2, size, size, dtype=torch.float64)
    y = torch.randn(1, 3, -(-size // 2), -(-size // 2), dtype=torch.float64)
    conv, deconv = conv.double(), deconv.double()
    torch.testing.assert_close((conv(x) * y).sum(), (x * deconv(y)).sum())


def test_conv_decoder_retraces_the_encoders_sizes_on_mnist():
    cfg = compose_config(["encoder=locatello_conv", "decoder=locatello_conv"])
    enc = build("encoder", cfg.encoder, in_shape=(1, 28, 28), latent_dim=5)
    dec = build("decoder", cfg.decoder, out_shape=(1, 28, 28), latent_dim=5)
    assert enc(torch.rand(2, 1, 28, 28))[0].shape == (2, 5)  # 28 -> 14 -> 7 -> 4 -> 2
    assert [m.out_size for m in dec.net if isinstance(m, SameConvTranspose2d)] == [(4, 4), (7, 7), (14, 14), (28, 28)]
    assert dec(torch.randn(2, 5)).shape == (2, 1, 28, 28)


def test_activation_and_kernel_errors_name_the_key():
    cfg = compose_config(["encoder.activation=Relu"])
    with pytest.raises(ConfigError, match=r"^encoder\.activation='Relu': must be one of .*ReLU.*Tanh"):
        build("encoder", cfg.encoder, in_shape=(1, 8, 8), latent_dim=2)
    cfg = compose_config(["encoder=locatello_conv", "encoder.hidden=[32,32]"])
    with pytest.raises(ConfigError, match=r"^encoder\.kernel=\[4, 4, 2, 2\]: must be .* list of 2 "):
        build("encoder", cfg.encoder, in_shape=(1, 64, 64), latent_dim=2)
    cfg = compose_config(["decoder.activation=Tanh"])
    assert any(isinstance(m, nn.Tanh) for m in build("decoder", cfg.decoder, out_shape=(1, 8, 8), latent_dim=2).net)


def test_warmup_in_epochs():
    """Linear with warmup_epochs takes its steps from the loop's steps_per_epoch; without it, a clear error (never a
    silent warm-up over warmup_steps)."""
    cfg = compose_config(["kl=linear", "++kl.warmup_epochs=2", "kl.beta=4"])
    schedule = build("kl", cfg.kl, total_steps=1000, steps_per_epoch=50)
    assert schedule.warmup_steps == 100
    assert [schedule.weight(s) for s in (0, 50, 100, 500)] == [0.0, 2.0, 4.0, 4.0]
    with pytest.raises(ConfigError, match=r"^kl\.warmup_epochs=2: needs steps_per_epoch"):
        build("kl", cfg.kl, total_steps=1000)


def test_sprites_factor_values_are_dsprites():
    """dSprites' latents_possible_values: shape 1, 2, 3; scale linspace(0.5, 1, 6); orientation linspace(0, 2pi, 40),
    both ends included; x and y linspace(0, 1, 32). Orientation class k is drawn at k 2pi/39, so 0 and 39 coincide."""
    from vae_lab.data.sprites import GRID_SIZE, ORIENTATIONS, Sprites, render_patches

    d = Sprites(val_size=10, test_size=10)
    d._index["test"] = torch.arange(GRID_SIZE)  # the whole grid, in its order
    values = d.factor_values("test", torch.arange(GRID_SIZE))
    expected = [torch.tensor([1.0, 2.0, 3.0]), torch.linspace(0.5, 1, 6), torch.linspace(0, 2 * math.pi, 40),
                torch.linspace(0, 1, 32), torch.linspace(0, 1, 32)]
    for column, want in zip(values.T, expected):
        torch.testing.assert_close(column.unique(), want)
    torch.testing.assert_close(ORIENTATIONS, torch.arange(40, dtype=torch.float64) * (2 * math.pi / 39))
    patches = render_patches().view(3, 6, 40, -1)
    assert torch.equal(patches[:, :, 0], patches[:, :, 39])
    assert all(not torch.equal(patches[:, :, k], patches[:, :, k + 1]) for k in range(39))
