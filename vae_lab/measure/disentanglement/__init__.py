"""Disentanglement metrics, each computed as the code that published it computes it: against ground-truth factors,
and the unsupervised ones (the code's own statistics; UDR over a set of runs) that need none.

One module per metric, each with its functions and its record `METRIC` (vae_lab.measure.disentanglement.base.Metric:
name, function, full and quick sizes, headline parts, what it needs); METRICS lists every module's record, found by
importing the package's modules (a new module is a new metric). `data` is an ImageData; for a metric that needs
factors, one with `factor_names`, `factor_sizes`, `sample_factors(n, generator)` and `images_for_factors(factors)`
(`usable` says which metrics a dataset allows). `represent` maps
images (n, C, H, W) to codes (n, D), numpy or torch: the posterior means (or, with `representation="sampled"`, one
z ~ q(z|x) per image) for every metric but Chen et al.'s MIG, whose `encode` returns (mean, log_var). Each metric
draws its own factors (and its sampled codes' noise) from generators seeded with `seed`, so its figure does not
depend on which other metrics ran. What each follows, what the sizes cost and how scikit-learn's
version moves the figures: docs/metrics.md.
"""
import importlib
import pkgutil
import time

from vae_lab.measure.disentanglement.base import Metric, sampled
from vae_lab.model import eval_mode
from vae_lab.results import REPRESENTATIONS, metric_key

__all__ = ["METRICS", "PRESETS", "Metric", "disentanglement", "headline_results", "headline_keys", "usable"]

# The six metrics of the β story first, in their historical order (eval.json and the tables keep it), then every
# other module of this package that has a record, alphabetically.
FIRST = ("mig_dlib", "mig_chen", "factor_vae", "dci", "sap", "beta_vae")
_modules = sorted(pkgutil.iter_modules(__path__), key=lambda m: (FIRST.index(m.name) if m.name in FIRST else
                                                                   len(FIRST), m.name))
METRICS = {r.name: r for r in (getattr(importlib.import_module(f"{__name__}.{m.name}"), "METRIC", None)
                               for m in _modules) if isinstance(r, Metric)}
PRESETS = ("quick", "full")  # the Metric fields `sizes` may name
ALL = "all"  # vae-eval's metrics=all: every metric of METRICS the data allows


def usable(names, data, runs=1):
    """(the `names` of METRICS that can score `data` with `runs` runs, in order; a one-line note naming the others
    and why, or None where none is left out)."""
    kept, why = [], {}
    for name in names:
        reason = METRICS[name].unusable(data, runs)
        if reason is None:
            kept.append(name)
        else:
            why.setdefault(reason, []).append(name)
    note = "; ".join(f"{', '.join(left)} left out: {reason}" for reason, left in why.items()) or None
    return kept, note


def disentanglement(encode, data, metrics=None, sizes="quick", seed=0, batch_size=2048, progress=True,
                     representation="mean"):
    """Run the `metrics` (names of METRICS; None: every one `data` allows on one run) with `sizes`: "quick", "full" or a {metric: {size: value}} mapping over
    the full sizes. `encode` maps images (n, C, H, W) to (mean, log_var), each (n, D); a metric that needs the
    log-variances gets it, the others get the code's `representation`: "mean", the posterior means (the field's
    convention), or "sampled", one z ~ q(z|x) per image as disentanglement_lib's sampled representation (base.sampled,
    its noise seeded with `seed` anew for each metric). Progress bars with time left go to stderr.

    Returns {metric: its result dict, "protocol": {metric: the sizes used}, "seconds": {metric: wall time},
    "sklearn_version": ..., "seed": seed, "representation": representation}. A metric that cannot score `data`
    (one that needs factors on data without them; UDR, which scores a set of runs: udr.udr) is a ValueError.
    """
    metrics = usable(METRICS, data)[0] if metrics is None else metrics
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown disentanglement metrics {unknown}; choose from {list(METRICS)}")
    note = usable(metrics, data)[1]
    if note:
        raise ValueError(note)
    if isinstance(sizes, str) and sizes not in PRESETS:
        raise ValueError(f"sizes must be one of {list(PRESETS)} or a mapping, got {sizes!r}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {list(REPRESENTATIONS)}, got {representation!r}")
    import sklearn  # lazy, as in the metrics; its version changes these figures (solver defaults)

    def means(images):
        return encode(images)[0]

    out, protocol, seconds = {}, {}, {}
    for name in metrics:
        metric = METRICS[name]
        protocol[name] = sizes_of(metric, sizes)
        represent = encode if metric.needs_log_var else means if representation == "mean" else sampled(encode, seed)
        start = time.perf_counter()
        out[name] = metric.compute(represent, data, seed=seed, batch_size=batch_size, progress=progress,
                                   **protocol[name])
        seconds[name] = round(time.perf_counter() - start, 2)
        # a size given as None (Chen's MIG: the whole grid) is recorded as the value the result reports using
        protocol[name] = {k: out[name].get(k) if v is None else v for k, v in protocol[name].items()}
    return {**out, "protocol": protocol, "seconds": seconds, "sklearn_version": sklearn.__version__, "seed": seed,
            "representation": representation}


def sizes_of(metric, sizes):
    """The sizes `metric` runs with: its `sizes` preset ("quick", "full") or a mapping's entry over its full ones."""
    given = getattr(metric, sizes) if isinstance(sizes, str) else sizes.get(metric.name, {})
    return {**metric.full, **dict(given)}


def udr_results(models, data, sizes="quick", seed=0, batch_size=2048):
    """UDR (Duan et al. 2020) of `models`, trained on `data` with other seeds, from their encoders' posterior means
    in evaluation mode: (udr.udr's result, with "protocol", "seed" and "sklearn_version" added)."""
    import contextlib

    import sklearn

    metric = METRICS["udr"]
    protocol = sizes_of(metric, sizes)
    with contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        encodes = [lambda x, model=model: tuple(t.float() for t in model.encoder(x)) for model in models]
        out = metric.compute(encodes, data, seed=seed, batch_size=batch_size, progress=True, **protocol)
    return {**out, "protocol": protocol, "seed": seed, "sklearn_version": sklearn.__version__}


def headline_results(model, data, metrics, sizes, seed, representations=("mean",)):
    """{"disentanglement": every metric's full result with its protocol, <metric>[_<part>]: the headline figures} of
    `model`'s encoder, in evaluation mode, for each of `representations`: the sampled code's figures keyed with
    `_sampled` (vae_lab.results.metric_key), its full results under "disentanglement_sampled". A metric that samples
    its own codes (Chen et al.'s MIG) runs once, in the first representation's pass, under its own name."""
    out = {}
    for i, representation in enumerate(representations):
        names = [m for m in metrics if i == 0 or not METRICS[m].needs_log_var]
        with eval_mode(model):
            full = disentanglement(lambda x: tuple(t.float() for t in model.encoder(x)), data, metrics=names,
                                   sizes=sizes, seed=seed, representation=representation)
        out.update({key: float(full[name][part]) for name in names
                    for key, part in METRICS[name].headlines(representation).items()})
        out[metric_key("disentanglement", None, representation)] = full
    return out


def headline_keys(metric_names, representations=("mean",)):
    """The eval.json keys of the headline figures of `metric_names` on `representations`, in order, each once."""
    keys = (key for rep in representations for name in metric_names for key in METRICS[name].headlines(rep))
    return list(dict.fromkeys(keys))
