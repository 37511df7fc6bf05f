"""The TensorFlow-'same' layers (vae_lab/networks.py): torch's own padding where it is symmetric, F.pad or a crop where
it is not, both the same function as the layers that always padded and cropped, on every shape the presets build."""
import copy
from functools import partial
from pathlib import Path

import pytest
import torch
from helpers import compose_config
from omegaconf import OmegaConf
from torch.nn import functional as F

from vae_lab.networks import SameConv2d, SameConvTranspose2d, same_padding
from vae_lab.runtime.build import build
from vae_lab.runtime.config import CONFIG_DIR

SAME_CONV = {"encoder": "vae_lab.encoders.SameConvEncoder", "decoder": "vae_lab.decoders.SameConvDecoder"}
# (C, H, W) of the datasets' images: sprites, dsprites, celeba, image_folder (1 or 3 x 64x64), shapes3d and mpi3d
# (3 x 64x64), cifar10 (3 x 32x32), mnist and fashion_mnist (1 x 28x28)
SHAPES = [(1, 64, 64), (3, 64, 64), (3, 32, 32), (1, 28, 28)]


def presets():
    """(group, option) of every encoder and decoder config with TensorFlow-'same' layers."""
    return [(group, p.stem) for group, target in SAME_CONV.items()
            for p in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")) if OmegaConf.load(p)._target_ == target]


def padded_then_convolved(layer, x):
    """SameConv2d as it was before torch's padding was used: the padding read from x, F.pad, an unpadded conv."""
    (top, bottom), (left, right) = (same_padding(n, k, s) for n, k, s in zip(x.shape[-2:], layer.kernel_size, layer.stride))
    return F.conv2d(F.pad(x, (left, right, top, bottom)), layer.weight, layer.bias, layer.stride)


def transposed_then_cropped(layer, x):
    """SameConvTranspose2d as it was: the whole unpadded transpose, cropped to out_size."""
    full = F.conv_transpose2d(x, layer.weight, layer.bias, layer.stride)
    (top, left), (h, w) = (same_padding(n, k, s)[0] for n, k, s in zip(layer.out_size, layer.kernel_size, layer.stride)), layer.out_size
    return full[..., top : top + h, left : left + w]


def explicit(layer):
    """`layer` switched to its F.pad / crop path, in place (its parameters stay those an optimizer holds)."""
    if (layer.pad if isinstance(layer, SameConv2d) else layer.crop) is None:
        (top, left), layer.padding = layer.padding, (0, 0)  # symmetric: as many zeros after as before
        if isinstance(layer, SameConv2d):
            layer.pad = (left, left, top, top)
        else:
            layer.crop = (top, left)
    return layer


def layers_and_inputs(group, option, shape):
    """Each 'same' layer of the preset's network built for images of `shape`, with an input it gets there."""
    torch.manual_seed(0)
    cfg = compose_config([f"{group}={option}"])
    sizes = {"encoder": {"in_shape": shape}, "decoder": {"out_shape": shape}}[group]
    net = build(group, cfg[group], latent_dim=3, **sizes)
    seen = []
    hooks = [m.register_forward_hook(lambda m, inputs, _out: seen.append((m, inputs[0].detach())))
             for m in net.modules() if isinstance(m, (SameConv2d, SameConvTranspose2d))]
    net(torch.rand(2, *shape) if group == "encoder" else torch.randn(2, 3))
    for h in hooks:
        h.remove()
    return seen


def outputs_and_gradients(fn, layer, x):
    """fn(x) and the gradients of a fixed random projection of it: on x, the weight and the bias."""
    x = x.clone().requires_grad_()
    layer.zero_grad()
    y = fn(x)
    torch.manual_seed(1)
    (y * torch.randn_like(y)).sum().backward()
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("group,option", presets())
def test_same_layers_compute_what_the_padded_and_cropped_ones_did(group, option, shape):
    """Forward and backward of each layer against the former F.pad/crop layers, and against its own F.pad/crop path."""
    for layer, x in layers_and_inputs(group, option, shape):
        before = padded_then_convolved if isinstance(layer, SameConv2d) else transposed_then_cropped
        ours = outputs_and_gradients(layer, layer, x)
        for got, want in zip(ours, outputs_and_gradients(partial(before, layer), layer, x)):
            torch.testing.assert_close(got, want)
        other = explicit(copy.deepcopy(layer))
        for got, want in zip(ours, outputs_and_gradients(other, other, x)):
            torch.testing.assert_close(got, want)


def test_the_presets_take_both_paths():
    """64x64 images pad symmetrically at every layer (torch's padding); 28x28 ones do not at 7x7 (F.pad, crop)."""
    def native(group, option, shape):
        return [(m.pad if isinstance(m, SameConv2d) else m.crop) is None
                for m, _ in layers_and_inputs(group, option, shape)]
    for group, option in presets():
        assert all(native(group, option, (1, 64, 64)))
    assert native("encoder", "locatello_conv", (1, 28, 28)) == [True, True, False, True]  # 28, 14, 7 (2x2), 4
    assert native("decoder", "locatello_conv", (1, 28, 28)) == [True, False, True, True]  # to 4, 7 (4x4), 14, 28


@pytest.mark.parametrize("size,kernel", [(7, 2), (7, 3), (5, 4), (6, 3), (9, 5), (8, 4)])
def test_odd_padding_takes_the_explicit_path(size, kernel):
    """Shapes no preset has (an odd total pads one more zero after, where torch's padding is symmetric)."""
    torch.manual_seed(0)
    out = -(-size // 2)
    conv, deconv = SameConv2d(2, 3, kernel, (size, size)), SameConvTranspose2d(3, 2, kernel, (size, size))
    symmetric = same_padding(size, kernel, 2)[0] == same_padding(size, kernel, 2)[1]
    assert (conv.pad is None) == (deconv.crop is None) == symmetric
    for layer, before, x in ((conv, padded_then_convolved, torch.randn(2, 2, size, size)),
                             (deconv, transposed_then_cropped, torch.randn(2, 3, out, out))):
        assert layer(x).shape[-2:] == ((out, out) if layer is conv else (size, size))
        for got, want in zip(outputs_and_gradients(layer, layer, x),
                             outputs_and_gradients(partial(before, layer), layer, x)):
            torch.testing.assert_close(got, want)


def test_a_locatello_run_trains_as_with_the_padded_and_cropped_layers(tmp_path):
    """experiment=locatello's first steps (on a slice, batch 16) give the same losses and parameters whether its
    layers use torch's padding or the F.pad / crop path that every layer took before."""
    from vae_lab.train import batches, setup, train_step

    cfg = compose_config(["experiment=locatello", "dataset.train_size=256", "dataset.val_size=64",
                          "dataset.test_size=64", "trainer.batch_size=16", "trainer.max_steps=8", "device=cpu"])
    runs = []
    for name in ("native", "explicit"):
        run = setup(cfg, tmp_path / name)
        if name == "explicit":
            for m in run.state.model.modules():
                if isinstance(m, (SameConv2d, SameConvTranspose2d)):
                    explicit(m)
        for x in batches(run):
            train_step(run, x)
        runs.append(run)
        run.logbook.close()
    native, other = (r.state for r in runs)
    assert native.step == other.step == 8 and native.guard.n == other.guard.n == 8
    torch.testing.assert_close(native.guard.rows[:8, :3], other.guard.rows[:8, :3])  # (recon, KL, loss) per step
    torch.testing.assert_close(native.model.state_dict(), other.model.state_dict())


def test_checkpoint_parameters_are_unchanged():
    """Parameter names and shapes of disentanglement_lib's networks, as checkpoints written before hold them."""
    cfg = compose_config(["encoder=locatello_conv", "decoder=locatello_conv"])
    enc = build("encoder", cfg.encoder, in_shape=(1, 64, 64), latent_dim=10)
    dec = build("decoder", cfg.decoder, out_shape=(1, 64, 64), latent_dim=10)
    shapes = {f"encoder.{k}": tuple(v.shape) for k, v in enc.state_dict().items()}
    shapes |= {f"decoder.{k}": tuple(v.shape) for k, v in dec.state_dict().items()}
    assert shapes == {
        "encoder.features.0.weight": (32, 1, 4, 4), "encoder.features.0.bias": (32,),
        "encoder.features.2.weight": (32, 32, 4, 4), "encoder.features.2.bias": (32,),
        "encoder.features.4.weight": (64, 32, 2, 2), "encoder.features.4.bias": (64,),
        "encoder.features.6.weight": (64, 64, 2, 2), "encoder.features.6.bias": (64,),
        "encoder.features.9.weight": (256, 1024), "encoder.features.9.bias": (256,),
        "encoder.head.weight": (20, 256), "encoder.head.bias": (20,),
        "decoder.net.0.weight": (256, 10), "decoder.net.0.bias": (256,),
        "decoder.net.2.weight": (1024, 256), "decoder.net.2.bias": (1024,),
        "decoder.net.5.weight": (64, 64, 4, 4), "decoder.net.5.bias": (64,),
        "decoder.net.7.weight": (64, 32, 4, 4), "decoder.net.7.bias": (32,),
        "decoder.net.9.weight": (32, 32, 4, 4), "decoder.net.9.bias": (32,),
        "decoder.net.11.weight": (32, 1, 4, 4), "decoder.net.11.bias": (1,),
    }
