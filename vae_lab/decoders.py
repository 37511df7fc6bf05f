"""Decoders: latent codes (B, D) -> raw parameters of p(x|z), (B, C, H, W); the likelihood applies any activation."""
import math

from torch import nn

from vae_lab.checks import int_list, positive_int
from vae_lab.networks import check_conv_fits, conv_sizes, mlp


class Decoder(nn.Module):
    """Base of the `decoder` group. Built as `Decoder(out_shape=(C, H, W), latent_dim=D, **config)`."""


class MLPDecoder(Decoder):
    def __init__(self, out_shape, latent_dim, hidden=(512,)):
        super().__init__()
        hidden = int_list("hidden", hidden)
        latent_dim = positive_int("latent_dim", latent_dim)
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(out_shape)], final_activation=False)

    def forward(self, z):
        return self.net(z).view(-1, *self.out_shape)


class ConvDecoder(Decoder):
    """Mirror of ConvEncoder: dense to the smallest feature map, 3x3 stride-2 transposed convolutions with
    channels `hidden` (smallest map first), then a 3x3 convolution to the image's channels.

    With hidden=[64, 32] this is the decoder of the Keras VAE example.
    """

    def __init__(self, out_shape, latent_dim, hidden=(64, 32)):
        super().__init__()
        hidden = int_list("hidden", hidden, allow_empty=False)
        latent_dim = positive_int("latent_dim", latent_dim)
        check_conv_fits(out_shape, hidden)
        c, h, w = out_shape
        hs, ws = conv_sizes(h, len(hidden)), conv_sizes(w, len(hidden))
        self.start = (hidden[0], hs[-1], ws[-1])
        self.fc = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)), nn.ReLU())
        layers, prev = [], hidden[0]
        for i, ch in enumerate(hidden):
            # out = 2 * in - 1 + output_padding must land exactly on the encoder's size at this depth
            target_h, target_w = hs[-2 - i], ws[-2 - i]
            pad = (target_h - (2 * hs[-1 - i] - 1), target_w - (2 * ws[-1 - i] - 1))
            layers += [nn.ConvTranspose2d(prev, ch, 3, stride=2, padding=1, output_padding=pad), nn.ReLU()]
            prev = ch
        layers.append(nn.Conv2d(prev, c, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.fc(z).view(-1, *self.start))
