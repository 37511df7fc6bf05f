"""Layer helpers the encoders and decoders share: MLP stacks, activations by name, and stride-2 convolutions padded
like TensorFlow's padding='same'."""
from torch import nn
from torch.nn import functional as F

from vae_lab.checks import ConfigError, choice, int_list, positive_int

# torch.nn's element-wise activations that need no arguments: its activation module, less the layers that mix
# entries (GLU, the softmaxes, MultiheadAttention) or have required arguments (Threshold)
ACTIVATIONS = tuple(sorted(set(nn.modules.activation.__all__)
                           - {"GLU", "Softmax", "Softmin", "Softmax2d", "LogSoftmax", "MultiheadAttention", "Threshold"}))


def activation_class(key, name):
    """The torch.nn activation class called `name` (ReLU, Tanh, ...); any other name is a ConfigError naming `key`."""
    return getattr(nn, choice(key, name, ACTIVATIONS))


def mlp(sizes, final_activation=True, act=nn.ReLU):
    """Linear layers through `sizes` with `act` between them (and after the last with `final_activation`)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def conv_sizes(size, n_layers):
    """Spatial sizes through `n_layers` stride-2 'same' convolutions: s -> ceil(s / 2)."""
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


def kernel_sizes(key, kernel, hidden):
    """One kernel size per layer of `hidden` from an integer (every layer) or a list with one per layer; each at least
    the stride, 2, so that a transposed convolution reaches every output pixel."""
    n_layers = len(hidden)
    if isinstance(kernel, int) and not isinstance(kernel, bool):
        sizes = [kernel] * n_layers
    else:
        try:
            sizes = int_list(key, kernel, allow_empty=False)
        except ConfigError:
            sizes = []
    if len(sizes) != n_layers or min(sizes) < 2:
        raise ConfigError(f"{key}={kernel}: must be an integer >= 2 or a list of {n_layers} of them, one per layer of "
                          f"hidden={hidden}")
    return sizes


def same_padding(size, kernel, stride):
    """TensorFlow's padding='same' along one axis of `size` inputs: the zeros (before, after) that give
    ceil(size / stride) outputs; an odd total puts the extra zero after (tf.nn.convolution's documented rule)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_padding_2d(size, kernel, stride):
    """same_padding along both axes of `size` (H, W), kernel and stride each an int or an (H, W) pair:
    ((top, bottom), (left, right)), and whether every axis is padded symmetrically."""
    kernel, stride = ((v, v) if isinstance(v, int) else tuple(v) for v in (kernel, stride))
    pads = tuple(same_padding(n, k, s) for n, k, s in zip(size, kernel, stride))
    return pads, all(before == after for before, after in pads)


class SameConv2d(nn.Conv2d):
    """nn.Conv2d padded like TensorFlow's padding='same' for inputs of `in_size` (H, W): (B, C, H, W) ->
    (B, C', ceil(H / s), ceil(W / s)). Where that padding is symmetric (a 4x4 kernel, stride 2, on an even size pads
    1 and 1) it is the convolution's own `padding`, with no copy of the input; where it is not (a 2x2 kernel, stride 2,
    on a 7x7 input pads 0 before and 1 after) the input is padded with F.pad first. Decided here, once."""

    def __init__(self, in_channels, out_channels, kernel_size, in_size, stride=2):
        pads, symmetric = same_padding_2d(in_size, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=tuple(before for before, _ in pads) if symmetric else 0)
        (top, bottom), (left, right) = pads
        self.pad = None if symmetric else (left, right, top, bottom)  # F.pad's order: the last axis first

    def forward(self, x):
        return super().forward(x if self.pad is None else F.pad(x, self.pad))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """The transpose of SameConv2d onto an output of `out_size` (H, W), as TensorFlow's conv2d_transpose with
    padding='same': (B, C, ceil(H / s), ceil(W / s)) -> (B, C', H, W); out_size = stride x input is
    tf.layers.conv2d_transpose's.

    The full transpose has (ceil(H / s) - 1) s + k rows, the `before` + H + `after` of SameConv2d's padding; output
    row p is its row p + before. Where before == after that is torch's own `padding` (which drops as many rows at
    each end: no output_padding is ever needed); otherwise the full output is computed and cropped.
    """

    def __init__(self, in_channels, out_channels, kernel_size, out_size, stride=2):
        pads, symmetric = same_padding_2d(out_size, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=tuple(before for before, _ in pads) if symmetric else 0)
        self.out_size = tuple(out_size)
        self.crop = None if symmetric else tuple(before for before, _ in pads)  # (top, left) rows/cols dropped

    def forward(self, x):
        if self.crop is None:
            return super().forward(x)
        full = super().forward(x)  # (B, C', (h - 1) s + k, (w - 1) s + k): every input pixel's whole kernel
        (top, left), (h, w) = self.crop, self.out_size
        return full[..., top : top + h, left : left + w]


def same_conv_args(shape, latent_dim, hidden, kernel, fc):
    """The checked arguments of the 'same'-padded conv encoder and decoder: (hidden, kernels, fc, latent_dim)."""
    hidden = int_list("hidden", hidden, allow_empty=False)
    kernels = kernel_sizes("kernel", kernel, hidden)
    fc = int_list("fc", fc)
    latent_dim = positive_int("latent_dim", latent_dim)
    check_conv_fits(shape, hidden)
    return hidden, kernels, fc, latent_dim
