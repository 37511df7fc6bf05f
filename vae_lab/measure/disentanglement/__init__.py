"""Disentanglement metrics against ground-truth factors, each computed as the code that published it computes it.

One module per metric, each with its functions and its record `METRIC` (vae_lab.measure.disentanglement.base.Metric:
name, function, full and quick sizes, headline parts); METRICS lists them. `data` is an ImageData with factors:
`factor_names`, `factor_sizes`, `sample_factors(n, generator)` and `images_for_factors(factors)`. `represent` maps
images (n, C, H, W) to codes (n, D), numpy or torch: the posterior means (or, with `representation="sampled"`, one
z ~ q(z|x) per image) for every metric but Chen et al.'s MIG, whose `encode` returns (mean, log_var). Each metric
draws its own factors (and its sampled codes' noise) from generators seeded with `seed`, so its figure does not
depend on which other metrics ran. What each follows, what the sizes cost and how scikit-learn's
version moves the figures: docs/metrics.md.
"""
import time

from vae_lab.measure.disentanglement import (
    beta_vae,
    dci,
    downstream_gbt,
    downstream_logreg,
    downstream_reduced,
    downstream_strong,
    explicitness_ridgeway,
    factor_vae,
    fairness,
    irs,
    mig_chen,
    mig_dlib,
    modularity_ridgeway,
    sap,
    unified,
)
from vae_lab.measure.disentanglement.base import Metric, check_factors, sampled
from vae_lab.model import eval_mode
from vae_lab.results import REPRESENTATIONS, metric_key

__all__ = ["METRICS", "PRESETS", "Metric", "disentanglement", "headline_results", "headline_keys"]

METRICS = {m.METRIC.name: m.METRIC for m in (mig_dlib, mig_chen, factor_vae, dci, sap, beta_vae,  # the first six
                                             modularity_ridgeway, explicitness_ridgeway, irs, downstream_logreg,
                                             downstream_gbt, downstream_reduced, downstream_strong, fairness,
                                             unified)}
PRESETS = ("quick", "full")  # the Metric fields `sizes` may name


def disentanglement(encode, data, metrics=tuple(METRICS), sizes="quick", seed=0, batch_size=2048, progress=True,
                     representation="mean"):
    """Run the `metrics` (names of METRICS) with `sizes`: "quick", "full" or a {metric: {size: value}} mapping over
    the full sizes. `encode` maps images (n, C, H, W) to (mean, log_var), each (n, D); a metric that needs the
    log-variances gets it, the others get the code's `representation`: "mean", the posterior means (the field's
    convention), or "sampled", one z ~ q(z|x) per image as disentanglement_lib's sampled representation (base.sampled,
    its noise seeded with `seed` anew for each metric). Progress bars with time left go to stderr.

    Returns {metric: its result dict, "protocol": {metric: the sizes used}, "seconds": {metric: wall time},
    "sklearn_version": ..., "seed": seed, "representation": representation}.
    """
    check_factors(data)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown disentanglement metrics {unknown}; choose from {list(METRICS)}")
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
        given = getattr(metric, sizes) if isinstance(sizes, str) else sizes.get(name, {})
        protocol[name] = {**metric.full, **dict(given)}
        represent = encode if metric.needs_log_var else means if representation == "mean" else sampled(encode, seed)
        start = time.perf_counter()
        out[name] = metric.compute(represent, data, seed=seed, batch_size=batch_size, progress=progress,
                                   **protocol[name])
        seconds[name] = round(time.perf_counter() - start, 2)
        # a size given as None (Chen's MIG: the whole grid) is recorded as the value the result reports using
        protocol[name] = {k: out[name].get(k) if v is None else v for k, v in protocol[name].items()}
    return {**out, "protocol": protocol, "seconds": seconds, "sklearn_version": sklearn.__version__, "seed": seed,
            "representation": representation}


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
