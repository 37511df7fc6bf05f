"""Disentanglement metrics against ground-truth factors, each computed as the code that published it computes it.

One module per metric, each with its functions and its record `METRIC` (vae_lab.measure.disentanglement.base.Metric:
name, function, full and quick sizes, headline parts); METRICS lists them. `data` is an ImageData with factors:
`factor_names`, `factor_sizes`, `sample_factors(n, generator)` and `images_for_factors(factors)`. `represent` maps
images (n, C, H, W) to codes (n, D), numpy or torch: the posterior means for every metric but Chen et al.'s MIG,
whose `encode` returns (mean, log_var). Each metric draws its own factors from a generator seeded with `seed`, so
its figure does not depend on which other metrics ran. What each follows, what the sizes cost and how scikit-learn's
version moves the figures: docs/metrics.md.
"""
import time

from vae_lab.measure.disentanglement import beta_vae, dci, factor_vae, mig_chen, mig_dlib, sap
from vae_lab.measure.disentanglement.base import Metric, check_factors
from vae_lab.model import eval_mode

__all__ = ["METRICS", "PRESETS", "Metric", "disentanglement", "headline_results", "headline_keys"]

METRICS = {m.METRIC.name: m.METRIC for m in (mig_dlib, mig_chen, factor_vae, dci, sap, beta_vae)}
PRESETS = ("quick", "full")  # the Metric fields `sizes` may name


def disentanglement(encode, data, metrics=tuple(METRICS), sizes="quick", seed=0, batch_size=2048, progress=True):
    """Run the `metrics` (names of METRICS) with `sizes`: "quick", "full" or a {metric: {size: value}} mapping over
    the full sizes. `encode` maps images (n, C, H, W) to (mean, log_var), each (n, D); a metric that needs the
    log-variances gets it, the others get the means. Progress bars with time left go to stderr.

    Returns {metric: its result dict, "protocol": {metric: the sizes used}, "seconds": {metric: wall time},
    "sklearn_version": ..., "seed": seed}.
    """
    check_factors(data)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown disentanglement metrics {unknown}; choose from {list(METRICS)}")
    if isinstance(sizes, str) and sizes not in PRESETS:
        raise ValueError(f"sizes must be one of {list(PRESETS)} or a mapping, got {sizes!r}")
    import sklearn  # lazy, as in the metrics; its version changes these figures (solver defaults)

    def represent(images):
        return encode(images)[0]  # the posterior means

    out, protocol, seconds = {}, {}, {}
    for name in metrics:
        metric = METRICS[name]
        given = getattr(metric, sizes) if isinstance(sizes, str) else sizes.get(name, {})
        protocol[name] = {**metric.full, **dict(given)}
        start = time.perf_counter()
        out[name] = metric.compute(encode if metric.needs_log_var else represent, data, seed=seed,
                                   batch_size=batch_size, progress=progress, **protocol[name])
        seconds[name] = round(time.perf_counter() - start, 2)
        # a size given as None (Chen's MIG: the whole grid) is recorded as the value the result reports using
        protocol[name] = {k: out[name].get(k) if v is None else v for k, v in protocol[name].items()}
    return {**out, "protocol": protocol, "seconds": seconds, "sklearn_version": sklearn.__version__, "seed": seed}


def headline_results(model, data, metrics, sizes, seed):
    """{"disentanglement": every metric's full result with its protocol, <metric>[_<part>]: the headline figures} of
    `model`'s encoder, in evaluation mode."""
    with eval_mode(model):
        full = disentanglement(lambda x: tuple(t.float() for t in model.encoder(x)), data, metrics=metrics,
                               sizes=sizes, seed=seed)
    flat = {key: float(full[name][part]) for name in metrics for key, part in METRICS[name].headlines().items()}
    return {**flat, "disentanglement": full}


def headline_keys(metric_names):
    """The eval.json keys of the headline figures of `metric_names`, in order."""
    return [key for name in metric_names for key in METRICS[name].headlines()]
