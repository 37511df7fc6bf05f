"""Encoders q(z|x): images (B, C, H, W) -> parameters of a diagonal Gaussian, (mean, log-variance), each (B, D)."""
import math

from torch import nn

from vae_lab.checks import int_list, positive_int
from vae_lab.networks import SameConv2d, activation_class, check_conv_fits, conv_sizes, mlp, same_conv_args


class Encoder(nn.Module):
    """Base of the `encoder` group. Built as `Encoder(in_shape=(C, H, W), latent_dim=D, **config)`."""

    def forward(self, x):
        h = self.features(x)
        mean, log_var = self.head(h).chunk(2, dim=-1)
        return mean, log_var


class MLPEncoder(Encoder):
    """Dense layers of widths `hidden`, each followed by `activation` (a torch.nn class name: ReLU, Tanh, ...)."""

    def __init__(self, in_shape, latent_dim, hidden=(512,), activation="ReLU"):
        super().__init__()
        hidden = int_list("hidden", hidden)
        latent_dim = positive_int("latent_dim", latent_dim)
        act = activation_class("activation", activation)
        self.features = nn.Sequential(nn.Flatten(), mlp([math.prod(in_shape), *hidden], act=act))
        self.head = nn.Linear(hidden[-1] if hidden else math.prod(in_shape), 2 * latent_dim)


class ConvEncoder(Encoder):
    """3x3 stride-2 'same' convolutions with ReLU (channels `hidden`), then an optional dense layer `fc`.

    With hidden=[32, 64], fc=16 this is the encoder of the Keras VAE example.
    """

    def __init__(self, in_shape, latent_dim, hidden=(32, 64), fc=None):
        super().__init__()
        hidden = int_list("hidden", hidden, allow_empty=False)
        latent_dim = positive_int("latent_dim", latent_dim)
        check_conv_fits(in_shape, hidden)
        c, h, w = in_shape
        layers, prev = [], c
        for ch in hidden:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.ReLU()]
            prev = ch
        hs, ws = conv_sizes(h, len(hidden))[-1], conv_sizes(w, len(hidden))[-1]
        layers.append(nn.Flatten())
        width = prev * hs * ws
        if fc is not None:
            layers += [nn.Linear(width, positive_int("fc", fc)), nn.ReLU()]
            width = fc
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * latent_dim)


class SameConvEncoder(Encoder):
    """Stride-2 convolutions padded like TensorFlow's padding='same' (channels `hidden`, kernel sizes `kernel`: one
    for all or one per layer), ReLU, then dense layers of widths `fc` with ReLU.

    disentanglement_lib's conv_encoder (configs/encoder/locatello_conv.yaml): hidden [32, 32, 64, 64], kernel
    [4, 4, 2, 2], fc [256]; Burgess et al. 2018's (burgess_conv.yaml): hidden [32, 32, 32, 32], kernel 4, fc [256, 256].
    """

    def __init__(self, in_shape, latent_dim, hidden=(32, 32, 64, 64), kernel=(4, 4, 2, 2), fc=(256,)):
        super().__init__()
        hidden, kernels, fc, latent_dim = same_conv_args(in_shape, latent_dim, hidden, kernel, fc)
        c, h, w = in_shape
        hs, ws = conv_sizes(h, len(hidden)), conv_sizes(w, len(hidden))  # [H, ceil(H / 2), ..., ceil(H / 2^n)]
        layers, prev = [], c
        for ch, k, size in zip(hidden, kernels, zip(hs, ws)):
            layers += [SameConv2d(prev, ch, k, size), nn.ReLU()]  # (B, prev, *size) -> (B, ch, ceil(size / 2))
            prev = ch
        width = prev * hs[-1] * ws[-1]
        self.features = nn.Sequential(*layers, nn.Flatten(), *mlp([width, *fc]))
        self.head = nn.Linear(fc[-1] if fc else width, 2 * latent_dim)  # disentanglement_lib's `means` and `log_var`
