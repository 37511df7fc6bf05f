"""Base class of the `dataset` group, and the uint8 images on the device that its file-backed options hand over."""
import collections
import concurrent.futures
import contextlib
import logging
import math
import tempfile
import warnings

import numpy as np
import torch

from vae_lab.checks import ConfigError, choice, number
from vae_lab.codelength import LEVELS

SPLITS = ("train", "val", "test")
RESIDENT = ("auto", True, False)
BUDGET_FRACTION = 0.5  # of the memory available, when dataset.memory_budget_gb is null: the model needs the rest
AHEAD = 4  # batches a streamed dataset gathers before they are asked for: its reused buffers hold that many

log = logging.getLogger("vae_lab")


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


def grid_sizes(classes, source):
    """The factor sizes (K,) of the factor classes (N, K) of a file's images, which must list its whole grid in row-major
    order (the order FactorGridData stores images in); a ConfigError naming `source` otherwise."""
    classes = np.asarray(classes)
    if classes.ndim != 2 or not len(classes) or classes.min() < 0:
        raise ConfigError(f"{source}: factor classes {classes.shape} are not (N, K) classes >= 0 of N images")
    sizes = tuple(int(s) for s in classes.max(0) + 1)
    if math.prod(sizes) != len(classes) or not np.array_equal(np.ravel_multi_index(classes.T, sizes),
                                                              np.arange(len(classes))):
        raise ConfigError(f"{source}: the images' factor classes are not the grid of factors {sizes} in row-major "
                          "order (each position once, the last factor varying fastest)")
    return sizes


class ImageData:
    """What the rest of vae_lab asks of a dataset, all of it: images (C, H, W) with values in `value_range`, batched
    by index; no per-item Dataset/DataLoader: collating a batch from single items costs more than indexing one
    resident tensor (scripts/bench.py: ratio_vs_dataloader).

    A dataset must provide REQUIRED; one with ground-truth factors (`factor_names` not empty) must provide
    REQUIRED_WITH_FACTORS too; everything in PROVIDED has a default here that a dataset may override. `seed` draws
    what a dataset draws once when it is built, such as binarize=static's one binarisation (a noise of the modelling,
    like the model's initialisation); it never draws a split: a seeded train/val/test split is drawn by the dataset's
    own `split_seed`, so that runs of several seeds are scored on the same test images."""

    # The contract, named once: docs/extending.md's table of what a dataset must provide is checked against these.
    REQUIRED = ("shape", "size", "batch")
    REQUIRED_WITH_FACTORS = ("factor_names", "factor_sizes", "factors", "images_for_factors")
    PROVIDED = ("value_range", "labels", "binary_by_nature", "dequantize", "stream", "epoch_order", "order_device",
                "sample_factors")
    # Derived from the above, never overridden: `device`, `binarize` and `seed` (the constructor's), `num_pixels`,
    # `binary`.

    value_range = (0.0, 1.0)  # every value lies in [low, high]: a likelihood checks that its support covers it
    factor_names: tuple = ()  # ground-truth generative factors, for datasets that have them (sprites)
    factor_sizes: tuple = ()  # number of values of each factor, in factor_names order; () when there are none
    binary_by_nature = False  # every pixel is 0 or 1 before any binarisation (sprites, dSprites)
    dequantize = "none"  # "uniform": 8-bit levels k become (k + u) / 256, u ~ U[0, 1) (`_float`)

    def __init__(self, binarize="none", seed=0, device="cpu"):
        self.binarize = choice("binarize", binarize, ("none", "static", "dynamic"))
        self.seed = int(number("seed", seed, low=0, integer=True))
        self.device = torch.device(device)

    @property
    def shape(self):
        """(C, H, W) of every image: a class attribute, or set in the constructor."""
        try:
            return self._shape
        except AttributeError:
            raise NotImplementedError(f"{type(self).__name__} sets no `shape` (C, H, W)") from None

    @shape.setter
    def shape(self, value):
        self._shape = tuple(value)

    def size(self, split):
        """Number of images of `split` (train, val or test)."""
        raise NotImplementedError(f"{type(self).__name__} has no `size(split)`")

    def batch(self, split, index, generator=None):
        """Float images (B, C, H, W) for the positions `index` of `split`; `generator` drives every random draw
        (dynamic binarisation, dequantisation)."""
        raise NotImplementedError(f"{type(self).__name__} has no `batch(split, index, generator)`")

    @property
    def num_pixels(self):
        """C * H * W: the dimensions a bits/dim figure divides by."""
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def binary(self):
        """Every value is 0 or 1 (binarised here, or binary by nature), so a Bernoulli is a probability of them."""
        return self.binarize != "none" or self.binary_by_nature

    def stream(self, split, indices, generator=None, rows=None):
        """Float batches for each index tensor that `indices` yields, in order: what the training loop iterates.
        `rows(n)`, a slice, keeps only those rows of each batch of n; the random draws are those of the whole batch."""
        for index in indices:
            x = self.batch(split, index, generator)
            yield x if rows is None else x[rows(len(index))]

    def labels(self, split, index):
        """Class labels (B,) where the dataset has them, else None (used to colour latent scatter plots)."""
        return None

    def epoch_order(self, split, epoch, seed):
        """The shuffled order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same batches."""
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.size(split), generator=g).to(self.order_device)

    @property
    def order_device(self):
        """Where `epoch_order` puts the order: the device, where a batch is indexed without a read back to the host."""
        return self.device

    def factors(self, split, index):
        """Factor classes (B, K) of the split's items `index`, in factor_names order (MIG on the validation split)."""
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth factors")

    def sample_factors(self, n, generator=None):
        """(n, K) factor classes drawn independently and uniformly, i.e. uniform over the factor grid."""
        columns = [torch.randint(size, (n,), generator=generator) for size in self.factor_sizes]
        return torch.stack(columns, 1) if columns else torch.zeros(n, 0, dtype=torch.long)

    def images_for_factors(self, factors, generator=None):
        """Float images (n, C, H, W) for the factor classes (n, K): what the disentanglement metrics ask for after
        fixing one factor and drawing the rest. `generator` drives dynamic binarisation."""
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth factors to draw images from")

    def _checked_factors(self, factors):
        """The factor classes (n, K) as a long tensor on the device; a ValueError unless column k holds classes below
        factor_sizes[k]."""
        factors = torch.as_tensor(factors, device=self.device).long()
        sizes = torch.tensor(self.factor_sizes, device=self.device)
        if factors.ndim != 2 or factors.shape[1] != len(sizes) or ((factors < 0) | (factors >= sizes)).any():
            raise ValueError(f"factors must be (n, {len(sizes)}) classes below {self.factor_sizes}")
        return factors

    def _dynamic(self, x, generator):
        # A fresh Bernoulli sample of each grey level every time the image is drawn (e.g. Burda et al. 2016).
        return torch.bernoulli(x, generator=generator) if self.binarize == "dynamic" else x

    def _check_dequantize(self, dequantize):
        self.dequantize = choice("dequantize", dequantize, ("none", "uniform"))
        if self.dequantize != "none" and self.binarize != "none":
            raise ConfigError(f"dequantize={dequantize}: binarised pixels are 0 or 1, not 8-bit levels; "
                              f"set dataset.binarize=none or dataset.dequantize=none")

    def _float(self, x, generator):
        """uint8 images as floats in [0, 1], dequantised or dynamically binarised as configured."""
        if self.dequantize == "uniform":  # Theis et al. 2016, sec. 3.1: fresh u per pixel each time x is drawn
            u = torch.rand(x.shape, generator=generator, device=x.device)
            return u.add_(x).div_(LEVELS).clamp_(max=_BELOW_ONE)
        return self._dynamic(x.float().div_(255), generator)


class TensorImageData(ImageData):
    """Splits held as uint8 tensors (N, C, H, W) on the device; converted to float per batch."""

    def __init__(self, images, labels=None, binarize="none", dequantize="none", seed=0, device="cpu"):
        super().__init__(binarize=binarize, seed=seed, device=device)
        self._check_dequantize(dequantize)
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
        return self._float(self._images[split][index], generator)

    def labels(self, split, index):
        return self._labels[split][index] if self._labels else None


def split_count(key, size, n):
    """An image count out of n given as a fraction in (0, 1) of n or as a count of at least 1; a ConfigError naming
    `key` otherwise."""
    if isinstance(size, float) and 0 < size < 1:
        return max(1, round(size * n))
    return int(number(key, size, low=1, integer=True))


def split_sizes(n, val_size, test_size):
    """(val, test) image counts out of n (`split_count`), leaving at least one image to train on; test_size None holds
    no test image out of the n (0): a dataset whose test split is files of its own. A ConfigError naming the key
    otherwise."""
    val = split_count("val_size", val_size, n)
    test = 0 if test_size is None else split_count("test_size", test_size, n)
    if val + test >= n:
        given = f"val_size={val_size}" + ("" if test_size is None else f", test_size={test_size}")
        raise ConfigError(f"{given}: leave no image of {n} to train on; give fractions such as 0.05 or smaller counts")
    return val, test


def seeded_splits(n, val_size, test_size, split_seed):
    """{split: positions} of n images: a permutation drawn with `split_seed` puts its first `test_size` in test, the
    next `val_size` in val and the rest in train (sizes as `split_sizes`); test_size None draws only val and train,
    for a dataset whose test split is files of its own. The one way every dataset draws a split."""
    split_seed = int(number("split_seed", split_seed, low=0, integer=True))
    val, test = split_sizes(n, val_size, test_size)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    drawn = {"val": order[test : test + val], "train": order[test + val :]}
    return drawn if test_size is None else {"test": order[:test], **drawn}


def available_memory(device):
    """Bytes free for the images on `device`: torch.cuda.mem_get_info's free memory on a GPU, /proc/meminfo's
    MemAvailable otherwise (unbounded where there is no /proc/meminfo)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return math.inf


def keep_resident(resident, nbytes, memory_budget_gb, device, memory_share=1.0):
    """Whether `nbytes` of images are held on the device (True) or streamed from their memory map (False):
    `resident` itself when true or false; with auto, whether they fit in memory_budget_gb, or when that is null in
    `memory_share` of BUDGET_FRACTION of the memory available on the device (a caller holding several copies of the
    images in one memory divides it among them). auto logs how it decided."""
    if not (resident is True or resident is False or resident == "auto"):
        raise ConfigError(f"resident={resident!r}: must be auto, true (hold the images on the device) or false "
                          "(stream each batch from the memory-mapped cache)")
    memory_share = number("memory_share", memory_share, low=0, high=1, low_open=True)
    if resident != "auto":
        return resident
    if memory_budget_gb is None:
        budget = BUDGET_FRACTION * available_memory(device) * memory_share
        source = f"{BUDGET_FRACTION:g} of the memory available" + (f" x {memory_share:g}" if memory_share < 1 else "")
    else:
        budget, source = number("memory_budget_gb", memory_budget_gb, low=0) * 2**30, "dataset.memory_budget_gb"
    keep = nbytes <= budget
    log.info("dataset: resident=auto: %.2f GB of images, budget %.2f GB on %s (%s): %s", nbytes / 2**30,
             budget / 2**30, device, source, "resident" if keep else "streamed from the memory-mapped cache")
    return keep


def gather(array, positions, out=None):
    """uint8 images (n, ...) at `positions` (n,) of a memory-mapped `array`, as a CPU tensor: one fancy-index read of
    the sorted positions (pages in file order, never one read per image), put back in the positions' order; written
    into the first n rows of `out` (a reused buffer) when given."""
    positions = np.asarray(positions)
    order = np.argsort(positions, kind="stable")
    x = torch.empty((len(positions), *array.shape[1:]), dtype=torch.uint8) if out is None else out[: len(positions)]
    x.numpy()[order] = array[positions[order]]
    return x


def gathered_ahead(array, positions, device, threads, ahead):
    """uint8 images (n, ...) on `device` for each positions array (n,) that `positions` yields, in order: gathered from
    `array` by `threads` threads of this process, `ahead` batches before they are asked for, into one of `ahead` reused
    buffers (pinned for a GPU, so the copy to it is asynchronous and needs no staging). On the CPU a batch is that
    buffer: read it before asking for the next.

    Threads rather than DataLoader worker processes: numpy's copy out of the memory map releases the GIL, so a thread
    that waits for the disk holds up nothing; and a thread needs no fork at the start, no shared-memory segment and
    pickled file descriptor per batch, no pin-memory thread and no pinned allocation per batch. Only the gather runs
    there: the positions, and every random draw, come from the caller's thread."""
    positions, pending, cuda = iter(positions), collections.deque(), device.type == "cuda"

    def fill(buffer, copied, where):
        if copied is not None:
            copied.synchronize()  # the copy out of this buffer to the device has finished: it can be written
        if buffer is None or len(buffer) < len(where):
            buffer = torch.empty((len(where), *array.shape[1:]), dtype=torch.uint8, pin_memory=cuda)
        return gather(array, where, out=buffer), buffer

    def submit(buffer, copied):
        where = next(positions, None)
        if where is not None:
            pending.append(pool.submit(fill, buffer, copied, where))

    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="vae_lab-gather")
    try:
        for _ in range(ahead):
            submit(None, None)
        while pending:
            batch, buffer = pending.popleft().result()
            batch = batch.to(device, non_blocking=True)
            copied = torch.cuda.Event() if cuda else None
            if cuda:
                copied.record()
            yield batch
            submit(buffer, copied)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class IndexedImageData(ImageData):
    """Every image in one uint8 array (N, C, H, W), each split a set of positions in it: what a file-backed dataset of
    any layout hands over. `splits` gives the positions of each split (a dataset's official partition); without it,
    `seeded_splits` draws them with `split_seed`: `test_size` images in test, `val_size` in val and the rest in train
    (sizes as fractions or counts). `labels` (N,) are class labels where the data has them.

    `resident` (`keep_resident`): true holds the images as a tensor on the device and indexes it per batch, the fast
    path; false leaves them in their memory-mapped file (numpy) and gathers each batch from it, in `workers` threads a
    few batches ahead while training (`stream`). Either way the positions, and every random draw, come from the
    training thread, so both give the same batches bit for bit. `memory_share` is the fraction of resident=auto's
    budget (memory_budget_gb null: BUDGET_FRACTION of the memory available) that these images may use: the caller
    divides it when several copies of them share one machine's memory."""

    def __init__(self, images, labels=None, splits=None, val_size=0.05, test_size=0.05, split_seed=0, binarize="none",
                 dequantize="none", resident=True, memory_budget_gb=None, memory_share=1.0, workers=2, seed=0,
                 device="cpu"):
        super().__init__(binarize=binarize, seed=seed, device=device)
        self._check_dequantize(dequantize)
        self.workers = int(number("workers", workers, low=0, integer=True))
        if splits is None:
            splits = seeded_splits(len(images), val_size, test_size, split_seed)
        self.resident = keep_resident(resident, images.nbytes, memory_budget_gb, self.device, memory_share)
        splits = {k: torch.as_tensor(splits[k], dtype=torch.long) for k in SPLITS}
        self._index = {k: index.to(self.device) for k, index in splits.items()}
        self._host_index = None if self.resident else {k: index.cpu() for k, index in splits.items()}  # for `stream`
        if self.resident:
            with warnings.catch_warnings():  # a read-only memory map (the decoded-image cache): only ever read
                warnings.filterwarnings("ignore", "The given NumPy array is not writable")
                images = torch.as_tensor(images)
        elif isinstance(images, torch.Tensor):
            images = images.numpy()
        if self.binarize == "static":
            images = self.binarize_once(images)
        self.images = images.to(self.device) if self.resident else images
        self._labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long).to(self.device)
        self.shape = tuple(self.images.shape[1:])

    def binarize_once(self, images):
        """One fixed, seeded binarisation of every image, a chunk at a time (binarize=static); streamed, into a
        temporary memory-mapped file, deleted when this dataset is."""
        g = torch.Generator().manual_seed(self.seed)
        starts = range(0, len(images), _CHUNK)
        chunks = ((torch.bernoulli(_tensor(images[i : i + _CHUNK]).float() / 255, generator=g) * 255).to(torch.uint8)
                  for i in starts)
        if self.resident:
            return torch.cat(list(chunks))
        self._spill = tempfile.NamedTemporaryFile(prefix="vae_lab-binarized-", suffix=".npy")
        out = np.lib.format.open_memmap(self._spill.name, mode="w+", dtype=np.uint8, shape=images.shape)
        for i, chunk in zip(starts, chunks):
            out[i : i + len(chunk)] = chunk.numpy()
        out.flush()
        return np.load(self._spill.name, mmap_mode="r")

    def size(self, split):
        return len(self._index[split])

    @property
    def order_device(self):
        """Streamed: the CPU, where the batches are gathered, so that `stream` reads nothing back from a GPU (a read back
        waits for every step queued there)."""
        return self.device if self.resident else torch.device("cpu")

    def positions(self, split, index):
        """Positions in `images` of the split's items `index`."""
        return self._index[split][torch.as_tensor(index, device=self.device)]

    def images_at(self, positions):
        """uint8 images (n, C, H, W) at `positions` (n,) of `images`, on the device: what a dataset holding its images in
        another form (dSprites' bit-packed rows) overrides."""
        if self.resident:
            return self.images[positions]
        return self._to_device(gather(self.images, torch.as_tensor(positions).cpu().numpy()))

    def _to_device(self, x):
        """A CPU batch onto the device, through pinned memory to a GPU; the copy overlaps what follows it."""
        if self.device.type == "cuda" and not x.is_pinned():
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def batch(self, split, index, generator=None):
        return self._float(self.images_at(self.positions(split, index)), generator)

    def stream(self, split, indices, generator=None, rows=None):
        """Resident: `batch` per index. Streamed: the positions looked up on the CPU, each batch gathered from the memory
        map by `workers` threads a few batches ahead (`gathered_ahead`), or by this thread when workers is 0, and
        converted to float here, where the draws are. With `rows` only those rows are gathered; the others are zeros
        while the whole batch's random draws are made (each pixel's draw does not depend on the other pixels' values),
        so the rows kept are those `batch` gives."""
        if self.resident:
            yield from super().stream(split, indices, generator, rows)
            return
        host, sizes = self._host_index[split], collections.deque()  # each batch's size, in the order they come back

        def positions(index):
            where = host[torch.as_tensor(index).cpu()].numpy()
            sizes.append(len(where))
            return where if rows is None else where[rows(len(where))]

        wanted = (positions(index) for index in indices)
        if self.workers:
            uint8 = gathered_ahead(self.images, wanted, self.device, self.workers, AHEAD)
        else:
            uint8 = (self._to_device(gather(self.images, where)) for where in wanted)
        with contextlib.closing(uint8):  # stopped early (a signal, stop_at_step): the threads end here
            for x in uint8:
                n = sizes.popleft()
                if rows is None:
                    yield self._float(x, generator)
                    continue
                whole = x.new_zeros((n, *x.shape[1:]))
                whole[rows(n)] = x
                yield self._float(whole, generator)[rows(n)]

    def labels(self, split, index):
        return None if self._labels is None else self._labels[self.positions(split, index)]


class FactorGridData(IndexedImageData):
    """Images stored in row-major order of a grid of ground-truth factors (dSprites, Shapes3D, MPI3D): position
    ravel_index(classes, grid_sizes) holds the image of those factor classes. A factor with a single value is not a
    latent factor (disentanglement_lib's dsprites_full leaves colour out), nor is one named in `nuisance` (its
    dsprites_noshape leaves shape out): both are dropped from `factor_names`, and a nuisance factor is drawn uniformly
    afresh for each image drawn for given factors (disentanglement_lib's SplitDiscreteStateSpace.sample_all_factors)."""

    def __init__(self, images, factor_names, factor_sizes, nuisance=(), **kwargs):
        if len(factor_names) != len(factor_sizes) or math.prod(factor_sizes) != len(images):
            raise ConfigError(f"dataset: {len(images)} images do not fill a grid of factors {dict(zip(factor_names, factor_sizes))}")
        if set(nuisance) - set(factor_names):
            raise ValueError(f"nuisance factors {sorted(set(nuisance) - set(factor_names))} are not in {factor_names}")
        self.grid_sizes = tuple(int(size) for size in factor_sizes)
        varying = [k for k, size in enumerate(self.grid_sizes) if size > 1]
        self._latent = [k for k in varying if factor_names[k] not in nuisance]
        self._nuisance = [k for k in varying if factor_names[k] in nuisance]
        self.factor_names = tuple(factor_names[k] for k in self._latent)
        self.factor_sizes = tuple(self.grid_sizes[k] for k in self._latent)
        super().__init__(images, **kwargs)

    def factors(self, split, index):
        """Factor classes (B, K) of the split's items `index`."""
        return unravel_index(self.positions(split, index), self.grid_sizes)[:, self._latent]

    def images_for_factors(self, factors, generator=None):
        factors = self._checked_factors(factors)
        grid = torch.zeros(len(factors), len(self.grid_sizes), dtype=torch.long, device=self.device)
        grid[:, self._latent] = factors
        for k in self._nuisance:
            grid[:, k] = torch.randint(self.grid_sizes[k], (len(factors),), generator=generator, device=self.device)
        return self._float(self.images_at(ravel_index(grid, self.grid_sizes)), generator)


def _tensor(x):
    """A tensor of x, copied out of a (read-only) numpy array."""
    return torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x


_CHUNK = 4096  # images binarised at a time (binarize=static)
_BELOW_ONE = 1 - 2.0**-24  # the float32 just below 1: 255 + u rounds to 256 when u is within 2**-17 of 1
