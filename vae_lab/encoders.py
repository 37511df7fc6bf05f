"""Encoders q(z|x): images (B, C, H, W) -> parameters of a diagonal Gaussian, (mean, log-variance), each (B, D)."""
import math

from torch import nn

from vae_lab.checks import int_list, positive_int
from vae_lab.networks import check_conv_fits, conv_sizes, mlp


class Encoder(nn.Module):
    """Base of the `encoder` group. Built as `Encoder(in_shape=(C, H, W), latent_dim=D, **config)`."""

    def forward(self, x):
        h = self.features(x)
        mean, log_var = self.head(h).chunk(2, dim=-1)
        return mean, log_var


class MLPEncoder(Encoder):
    def __init__(self, in_shape, latent_dim, hidden=(512,)):
        super().__init__()
        hidden = int_list("hidden", hidden)
        latent_dim = positive_int("latent_dim", latent_dim)
        self.features = nn.Sequential(nn.Flatten(), mlp([math.prod(in_shape), *hidden]))
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
