"""Layer helpers the encoders and decoders share: MLP stacks and the sizes of stride-2 'same' convolutions."""
from torch import nn

from vae_lab.checks import ConfigError


def mlp(sizes, final_activation=True):
    """Linear layers through `sizes` with ReLU between them (and after the last with `final_activation`)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_sizes(size, n_layers):
    """Spatial sizes through `n_layers` 3x3 stride-2 'same' convolutions: s -> ceil(s / 2)."""
    sizes = [size]
    for _ in range(n_layers):
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def check_conv_fits(in_shape, channels):
    """ConfigError unless every one of len(channels) stride-2 layers gets an input of at least 2x2."""
    _, h, w = in_shape
    sizes = conv_sizes(min(h, w), len(channels))
    for k, s in enumerate(sizes[:-1]):
        if s < 2:
            most = next(i for i, t in enumerate(sizes) if t < 2)
            raise ConfigError(
                f"hidden={channels}: {len(channels)} stride-2 conv layers do not fit {h}x{w} images "
                f"(layer {k + 1} would get a {s}x{s} input); use at most {most} layers"
            )
