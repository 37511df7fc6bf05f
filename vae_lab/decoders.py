"""Decoders: latent codes (B, D) -> raw parameters of p(x|z), (B, C, H, W); the likelihood applies any activation."""
import math

from torch import nn

from vae_lab.checks import int_list, positive_int
from vae_lab.networks import SameConvTranspose2d, activation_class, check_conv_fits, conv_sizes, mlp, same_conv_args


class Decoder(nn.Module):
    """Base of the `decoder` group. Built as `Decoder(out_shape=(C, H, W), latent_dim=D, **config)`."""


class MLPDecoder(Decoder):
    """Dense layers of widths `hidden`, each followed by `activation` (a torch.nn class name: ReLU, Tanh, ...), then a
    dense layer to the pixels."""

    def __init__(self, out_shape, latent_dim, hidden=(512,), activation="ReLU"):
        super().__init__()
        hidden = int_list("hidden", hidden)
        latent_dim = positive_int("latent_dim", latent_dim)
        act = activation_class("activation", activation)
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(out_shape)], final_activation=False, act=act)

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


class SameConvDecoder(Decoder):
    """Dense layers of widths `fc` with ReLU, a dense layer with ReLU to the smallest feature map (hidden[0]
    channels), then stride-2 transposed convolutions padded like TensorFlow's 'same' (kernel sizes `kernel`) through
    the channels hidden[1:] and the image's channels, ReLU between them. The maps retrace SameConvEncoder's sizes,
    ceil(H / 2^i), so any image size fits; on 64x64 images each layer doubles the size, as tf.layers.conv2d_transpose.

    disentanglement_lib's deconv_decoder (configs/decoder/locatello_conv.yaml): fc [256], hidden [64, 64, 32, 32],
    kernel 4: dense 256 -> 1024 = 64x4x4 -> transposed convolutions to 64, 32, 32 and C channels. Burgess et al.
    2018's (burgess_conv.yaml): fc [256, 256], hidden [32, 32, 32, 32].
    """

    def __init__(self, out_shape, latent_dim, hidden=(64, 64, 32, 32), kernel=4, fc=(256,)):
        super().__init__()
        hidden, kernels, fc, latent_dim = same_conv_args(out_shape, latent_dim, hidden, kernel, fc)
        c, h, w = out_shape
        hs, ws = conv_sizes(h, len(hidden)), conv_sizes(w, len(hidden))  # [H, ceil(H / 2), ..., ceil(H / 2^n)]
        start = (hidden[0], hs[-1], ws[-1])
        layers = [*mlp([latent_dim, *fc, math.prod(start)]), nn.Unflatten(1, start)]  # (B, D) -> (B, *start)
        for i, (ch_in, ch_out, k) in enumerate(zip(hidden, [*hidden[1:], c], kernels)):
            size = (hs[-2 - i], ws[-2 - i])  # the encoder's size one layer up
            layers.append(SameConvTranspose2d(ch_in, ch_out, k, size))  # (B, ch_in, ...) -> (B, ch_out, *size)
            if i < len(hidden) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)
