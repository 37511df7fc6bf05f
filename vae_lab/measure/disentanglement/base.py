"""What every disentanglement metric shares: its record, and the codes of images drawn for given factors.

The record lives here, not in the package's __init__, because each metric module builds its own and __init__
imports them all.
"""
import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch

from vae_lab.progress import bar as progress_bar
from vae_lab.results import metric_key


class Metric(NamedTuple):
    """One disentanglement metric: `compute(represent, data, **sizes, seed=, batch_size=, progress=)` -> result dict.

    `full` holds the published protocol's sizes (compute's defaults) and `quick` vae-eval's smaller samples of the
    same statistics; figures on the two do not compare (smaller samples bias MI upwards, accuracies are noisier),
    so a result records the sizes it ran with. `headline` names the parts of the result vae-eval prints and writes
    top-level in eval.json: `metric_key(name, part)`, or the part alone where `prefixed` is False (the unsupervised
    scores, InfoMEC: keys as their papers name them). `needs_log_var`: compute takes `encode` (images -> (mean,
    log_var)) rather than `represent` (images -> posterior means). `needs_factors`: it scores a code against
    ground-truth factors (False: any images will do, the test split's where there are no factors). `needs_runs`: it
    scores a set of runs trained on the same data (UDR), not one, so vae-eval runs it only with `runs=`/`sweep=`.
    """

    name: str
    compute: Callable
    full: dict
    quick: dict
    headline: tuple
    needs_log_var: bool = False
    needs_factors: bool = True
    needs_runs: bool = False
    prefixed: bool = True

    def headlines(self, representation="mean"):
        """{eval.json key: the part of the result it holds}, a metric with one headline keyed by its own name, on
        `representation` of the code (vae_lab.results.REPRESENTATIONS). A metric that needs the log-variances samples
        its own codes from q(z|x) whatever the representation: its keys have no suffix."""
        representation = "mean" if self.needs_log_var else representation
        if len(self.headline) == 1 and self.prefixed:
            return {metric_key(self.name, None, representation): self.headline[0]}
        return {metric_key(self.name if self.prefixed else part, part if self.prefixed else None, representation): part
                for part in self.headline}

    def unusable(self, data, runs=1):
        """Why this metric cannot score `data` with `runs` runs (a short phrase), or None where it can."""
        if self.needs_factors and not data.factor_sizes:
            return f"{type(data).__name__} has no ground-truth factors"
        if self.needs_runs and runs < 2:
            return "needs a set of runs trained on the same data: vae-eval runs=[<dir>,<dir>,...] or sweep=<dir>"
        return None


def as_numpy(x):
    """A torch tensor or array-like as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def sampled(encode, seed):
    """images -> one z ~ q(z|x) per image, mean + exp(log_var / 2) * noise, fresh noise at every call from a generator
    seeded with `seed`: disentanglement_lib's sampled representation (postprocessing/methods.py,
    sampled_representation; config/unsupervised_study_v1/postprocess_configs/sampled.gin)."""
    generators = {}

    def represent(images):
        mean, log_var = (torch.as_tensor(t) for t in encode(images))
        g = generators.setdefault(mean.device, torch.Generator(device=mean.device).manual_seed(seed))
        noise = torch.randn(mean.shape, generator=g, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * noise

    return represent


def check_factors(data):
    if not data.factor_sizes:
        raise ValueError(f"{type(data).__name__} has no ground-truth factors: the disentanglement metrics need them")


def generators(data, seed):
    """(factor generator on the CPU, image generator on the data's device for dynamic binarisation), both seeded."""
    device = getattr(data, "device", torch.device("cpu"))
    return torch.Generator().manual_seed(seed), torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def encode_factors(represent, data, factors, image_g, batch_size, bar=None):
    """Codes (n, D) float64 of the images of the factor classes (n, K), `batch_size` images at a time."""
    out = []
    for start in range(0, len(factors), batch_size):
        chunk = factors[start : start + batch_size]
        out.append(as_numpy(represent(data.images_for_factors(chunk, image_g))))
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(out)


def sample_codes(represent, data, n, g, image_g, batch_size, bar=None):
    """n i.i.d. points: factors uniform over the grid, their images' codes. Returns (codes (n, D), factors (n, K))."""
    factors = data.sample_factors(n, g)
    return encode_factors(represent, data, factors, image_g, batch_size, bar), factors.cpu().numpy()


@torch.no_grad()
def data_codes(represent, data, n, seed, batch_size, progress, desc):
    """Codes (n, D) float64 of n images, for the metrics that need no factors: with ground-truth factors, images
    drawn uniformly over the factor grid (disentanglement_lib's `sample_observations`); without, the test split's
    images, a random n of them (seeded) or all where it has fewer."""
    g, image_g = generators(data, seed)
    if data.factor_sizes:
        with progress_bar(n, f"{desc}: encode", "img", enabled=progress, unit_scale=True) as bar:
            return sample_codes(represent, data, n, g, image_g, batch_size, bar)[0]
    size = data.size("test")
    index = torch.randperm(size, generator=g)[:n].sort().values if n < size else torch.arange(size)
    out = []
    with progress_bar(len(index), f"{desc}: encode", "img", enabled=progress, unit_scale=True) as bar:
        for chunk in index.split(batch_size):
            out.append(as_numpy(represent(data.batch("test", chunk.to(data.device), image_g))))
            bar.update(len(chunk))
    return np.concatenate(out)


def train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, desc):
    """Two independent i.i.d. samples, ((codes, factors) of n_train points, (codes, factors) of n_test points)."""
    g, image_g = generators(data, seed)
    with progress_bar(n_train + n_test, f"{desc}: encode", "img", enabled=progress, unit_scale=True) as bar:
        return (sample_codes(represent, data, n_train, g, image_g, batch_size, bar),
                sample_codes(represent, data, n_test, g, image_g, batch_size, bar))


def fit_counted(model, x, y):
    """model.fit(x, y) with scikit-learn's ConvergenceWarning caught: (the fitted model, 1 if it warned else 0).
    Its FutureWarnings about defaults that a later version changes are silenced: the callers set what they rely on."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: vae-train never pays for sklearn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(x, y)
    return model, int(any(issubclass(w.category, ConvergenceWarning) for w in caught))


def factor_accuracies(make_model, train_codes, train_factors, test_codes, test_factors, factors=None, bar=None):
    """One `make_model()` per factor (each of `factors`, default all) fit on the training codes (N, D) to predict that
    factor's classes (N, K): its accuracy on the training and the test points, as disentanglement_lib's downstream
    tasks compute it (downstream_task.py, _compute_loss). Returns (train accuracies, test accuracies, unconverged
    fits), the accuracies one per factor in order."""
    x_train, x_test = as_numpy(train_codes), as_numpy(test_codes)
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    train, test, unconverged = [], [], 0
    for k in range(y_train.shape[1]) if factors is None else factors:
        model, warned = fit_counted(make_model(), x_train, y_train[:, k])
        train.append(float(np.mean(model.predict(x_train) == y_train[:, k])))
        test.append(float(np.mean(model.predict(x_test) == y_test[:, k])))
        unconverged += warned
        if bar is not None:
            bar.update(1)
    return train, test, unconverged


def one_sample(represent, data, n, seed, batch_size, progress, desc):
    """n i.i.d. points drawn with generators seeded with `seed`, with a progress bar: (codes (n, D), factors (n, K))."""
    with progress_bar(n, f"{desc}: encode", "img", enabled=progress, unit_scale=True) as bar:
        return sample_codes(represent, data, n, *generators(data, seed), batch_size, bar)
