"""Base class of the `dataset` group and the in-memory uint8 implementation (Fashion-)MNIST use."""
import torch

from vae_lab.checks import ConfigError, choice, number
from vae_lab.codelength import LEVELS

SPLITS = ("train", "val", "test")


def unravel_index(index, sizes):
    """Factor classes (n, K) of the row-major positions `index` (n,) in the grid of factors of `sizes` (K,): the
    columns of torch.unravel_index."""
    return torch.stack(torch.unravel_index(index, tuple(sizes)), 1)


def ravel_index(factors, sizes):
    """Row-major grid positions (n,) of the factor classes (n, K): the inverse of `unravel_index`."""
    index = torch.zeros(len(factors), dtype=torch.long, device=factors.device)
    for k, size in enumerate(sizes):  # Horner's scheme: ((v_0 * s_1 + v_1) * s_2 + v_2) ...
        index = index * size + factors[:, k]
    return index


class ImageData:
    """Images (C, H, W) with values in `value_range`, batched by index; no per-item Dataset/DataLoader: collating
    a batch from single items costs more than indexing one resident tensor (scripts/bench.py: ratio_vs_dataloader).
    """

    shape: tuple
    value_range = (0.0, 1.0)
    factor_names: tuple = ()  # ground-truth generative factors, for datasets that have them (sprites)
    dequantize = "none"  # "uniform": 8-bit levels k become (k + u) / 256, u ~ U[0, 1) (TensorImageData)
    factor_sizes: tuple = ()  # number of values of each factor, in factor_names order; () when there are none

    def __init__(self, binarize="none", seed=0, device="cpu"):
        self.binarize = choice("binarize", binarize, ("none", "static", "dynamic"))
        self.seed = int(number("seed", seed, low=0, integer=True))
        self.device = torch.device(device)

    @property
    def binary(self):
        """Every value is 0 or 1 (binarised here, or binary by nature), so a Bernoulli is a probability of them."""
        return self.binarize != "none"

    @property
    def num_pixels(self):
        return self.shape[0] * self.shape[1] * self.shape[2]

    def size(self, split):
        raise NotImplementedError

    def batch(self, split, index, generator=None):
        """Float images (B, C, H, W) for the positions `index` of `split`; `generator` drives dynamic binarisation."""
        raise NotImplementedError

    def labels(self, split, index):
        """Class labels (B,) where the dataset has them, else None (used to colour latent scatter plots)."""
        return None

    def sample_factors(self, n, generator=None):
        """(n, K) factor classes drawn independently and uniformly, i.e. uniform over the factor grid."""
        columns = [torch.randint(size, (n,), generator=generator) for size in self.factor_sizes]
        return torch.stack(columns, 1) if columns else torch.zeros(n, 0, dtype=torch.long)

    def images_for_factors(self, factors, generator=None):
        """Float images (n, C, H, W) for the factor classes (n, K): what the disentanglement metrics ask for after
        fixing one factor and drawing the rest. `generator` drives dynamic binarisation."""
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth factors to draw images from")

    def epoch_order(self, split, epoch, seed):
        """The shuffled order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same batches."""
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.size(split), generator=g).to(self.device)

    def _dynamic(self, x, generator):
        # A fresh Bernoulli sample of each grey level every time the image is drawn (e.g. Burda et al. 2016).
        return torch.bernoulli(x, generator=generator) if self.binarize == "dynamic" else x


class TensorImageData(ImageData):
    """Splits held as uint8 tensors (N, C, H, W) on the device; converted to float per batch."""

    def __init__(self, images, labels=None, binarize="none", dequantize="none", seed=0, device="cpu"):
        super().__init__(binarize=binarize, seed=seed, device=device)
        self.dequantize = choice("dequantize", dequantize, ("none", "uniform"))
        if self.dequantize != "none" and self.binarize != "none":
            raise ConfigError(f"dequantize={dequantize}: binarised pixels are 0 or 1, not 8-bit levels; "
                              f"set dataset.binarize=none or dataset.dequantize=none")
        if set(images) != set(SPLITS):
            raise ConfigError(f"dataset: needs the splits {SPLITS}, got {tuple(images)}")
        g = torch.Generator().manual_seed(self.seed)
        self._images, self._labels = {}, {}
        for split in SPLITS:
            x = torch.as_tensor(images[split], dtype=torch.uint8)
            if self.binarize == "static":  # one fixed, seeded binarisation of the whole split
                x = (torch.bernoulli(x.float() / 255, generator=g) * 255).to(torch.uint8)
            self._images[split] = x.to(self.device)
            if labels is not None:
                self._labels[split] = torch.as_tensor(labels[split], dtype=torch.long).to(self.device)
        self.shape = tuple(self._images["train"].shape[1:])

    def size(self, split):
        return self._images[split].shape[0]

    def batch(self, split, index, generator=None):
        x = self._images[split][index]
        if self.dequantize == "uniform":  # Theis et al. 2016, sec. 3.1: fresh u per pixel each time x is drawn
            u = torch.rand(x.shape, generator=generator, device=x.device)
            return u.add_(x).div_(LEVELS).clamp_(max=_BELOW_ONE)
        return self._dynamic(x.float().div_(255), generator)

    def labels(self, split, index):
        return self._labels[split][index] if self._labels else None


_BELOW_ONE = 1 - 2.0**-24  # the float32 just below 1: 255 + u rounds to 256 when u is within 2**-17 of 1
