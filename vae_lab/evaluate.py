"""vae-eval: a trained run's test-split measurements and pictures, written into its own directory.

    vae-eval run=<run dir> [checkpoint=last|best] [iwae.k=1000] [max_images=null] [pictures=true] [metrics=all] ...
    vae-eval runs=[<run dir>,<run dir>,...] | sweep=<sweep dir>    # UDR over runs of one setting, other seeds

Writes <run>/eval.json, TensorBoard scalars and images under test/, and PNGs <run>/figures/test_*.png; with `runs`
or `sweep`, only each run's UDR (Duan et al. 2020), added to its eval.json as `udr` and `udr_detail`.
"""
import logging
import math
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from vae_lab import nested, rundir
from vae_lab.checks import DEVICES, ConfigError, choice, first_line, number, positive_int, resolve_device
from vae_lab.measure.disentanglement import ALL, METRICS, PRESETS, headline_keys, headline_results, udr_results, usable
from vae_lab.measure.elbo import measure
from vae_lab.measure.pictures import log_pictures
from vae_lab.results import MEASURE, MEASURED, MEASUREMENT, REPRESENTATIONS
from vae_lab.runtime import checkpoint
from vae_lab.runtime.build import build, build_model
from vae_lab.runtime.config import CONFIG_DIR, EvalConfig, check_schema
from vae_lab.runtime.logbook import Logbook

PROG = "vae-eval"
BOTH = "both"  # representation=both: the metrics on every one of REPRESENTATIONS
UDR_KEYS = ("udr", "udr_detail")  # eval.json's keys that vae-eval runs=[...] writes; vae-eval run=... keeps them


def options(argv):
    """configs/evaluate.yaml with the `key=value` overrides of `argv`, composed by Hydra (vae-train's syntax), checked.

    Composed rather than run as a Hydra app: vae-eval writes into the run it evaluates, never an output directory.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    for arg in argv:
        if "=" not in arg and not arg.startswith("~"):
            raise ConfigError(f"{arg!r}: arguments are key=value, e.g. run=outputs/runs/<date>/<time>")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=PROG):
            opts = compose("evaluate", overrides=[_quoted(arg) for arg in argv])
    except HydraException as e:  # a bad override or an unknown key: Hydra's message, first line
        keys = nested.flatten(OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "evaluate.yaml")))
        raise ConfigError(f"{first_line(e)} (keys: {', '.join(keys)})") from None
    check_schema(EvalConfig, opts, "see configs/evaluate.yaml")
    if not OmegaConf.is_list(opts.runs):
        raise ConfigError(f"runs={opts.runs}: must be a list of run directories, e.g. runs=[<dir>,<dir>,<dir>]")
    given = [key for key, value in (("run", opts.run), ("runs", list(opts.runs)), ("sweep", opts.sweep)) if value]
    if not given:
        raise ConfigError("run: required; give the run directory, e.g. vae-eval run=outputs/runs/<date>/<time> "
                          "(or runs=[<dir>,...] / sweep=<dir> for UDR over several seeds)")
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: give one of run, runs and sweep")
    choice("checkpoint", opts.checkpoint, (rundir.LAST, rundir.BEST))
    choice("device", opts.device, DEVICES)
    if opts.max_images is not None:
        positive_int("max_images", opts.max_images)
    positive_int("batch_size", opts.batch_size)
    if opts.seed is not None:
        number("seed", opts.seed, low=0, integer=True)
    number("iwae.k", opts.iwae.k, low=0, integer=True)
    if opts.iwae.images is not None:
        positive_int("iwae.images", opts.iwae.images)
    if opts.iwae.chunk != "auto":
        positive_int("iwae.chunk", opts.iwae.chunk)
    if opts.decomposition_images is not None:
        positive_int("decomposition_images", opts.decomposition_images)
    choice("pictures", opts.pictures, (True, False))
    if opts.metrics != ALL:
        if not OmegaConf.is_list(opts.metrics):
            raise ConfigError(f"metrics={opts.metrics}: must be all or a list, e.g. metrics=[mig_dlib,dci] (or [] "
                              "for none)")
        for name in opts.metrics:
            choice("metrics", name, tuple(METRICS))
    sizes = opts.metric_sizes
    if OmegaConf.is_dict(sizes):  # {metric: {size: value}} over the full protocol, e.g. metric_sizes={dci:{n_train:500}}
        for name, given in sizes.items():
            choice("metric_sizes", name, tuple(METRICS))
            for key, value in (given or {}).items():
                choice(f"metric_sizes.{name}", key, tuple(METRICS[name].full))
                if value is not None:
                    positive_int(f"metric_sizes.{name}.{key}", value)
    else:
        choice("metric_sizes", sizes, PRESETS)
    choice("representation", opts.representation, (*REPRESENTATIONS, BOTH))
    return opts


def representations(opts):
    """The codes the disentanglement metrics score, in order: vae_lab.results.REPRESENTATIONS, or one of them."""
    return REPRESENTATIONS if opts.representation == BOTH else (opts.representation,)


def _quoted(arg):
    """`key=value` with the value quoted when it holds a `=`, as a sweep job's directory does
    (run=outputs/sweeps/<date>/kl.beta=4/seed=0): Hydra's override grammar takes `=` only inside quotes. In a list
    (runs=[<dir>,<dir>]) each item is quoted so."""
    key, _, value = arg.partition("=")
    if "=" not in value or value[:1] in "'\"":
        return arg
    if value.startswith("[") and value.endswith("]"):
        return f"{key}=[" + ",".join(_quote(v) if "=" in v else v for v in value[1:-1].split(",")) + "]"
    return f"{key}={_quote(value)}"


def _quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def metric_names(opts):
    """The metrics asked for, in METRICS' order for metrics=all."""
    return list(METRICS) if opts.metrics == ALL else list(opts.metrics)


def load_run(opts, run_dir=None):
    """The run's config, data, and model with the checkpoint's weights; raises ConfigError before writing anything."""
    run_dir = Path(opts.run if run_dir is None else run_dir)
    cfg = rundir.config(run_dir, key="run")
    ckpt_path = rundir.checkpoint(run_dir, opts.checkpoint)
    state = checkpoint.load(ckpt_path)
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{ckpt_path}: not a vae_lab checkpoint (no model weights in it)")
    device = resolve_device(opts.device)
    data = build("dataset", cfg.dataset, device=device)
    model = build_model(cfg, data)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(f"{ckpt_path}: checkpoint does not fit the model in {run_dir / rundir.CONFIG} "
                          f"({first_line(e)})") from None
    return run_dir, cfg, data, model.to(device), state


def evaluate(opts):
    """Evaluate on the test split and write eval.json, TensorBoard test/ entries and figures/test_*.png; returns
    eval.json's content (keys: vae_lab.results)."""
    start = time.perf_counter()
    run_dir, cfg, data, model, state = load_run(opts)
    seed = cfg.seed if opts.seed is None else opts.seed
    step = int(state.get("step", 0))
    result = measure(model, data, "test", opts.max_images, opts.batch_size, seed=seed,
                     iwae_k=opts.iwae.k, iwae_images=opts.iwae.images, iwae_chunk=opts.iwae.chunk,
                     decomposition_images=opts.decomposition_images, mig=False, progress=True)
    names, note = usable(metric_names(opts), data)
    if note:
        result["metrics_note"] = note
        logging.getLogger(PROG).info(note)
    if names:
        result.update(headline_results(model, data, names, metric_sizes(opts), seed, representations(opts)))
    previous = rundir.read_json(run_dir / rundir.EVAL) or {}
    result.update({k: previous[k] for k in UDR_KEYS if k in previous})  # of the set of runs, not of this pass
    evaluate_s = time.perf_counter() - start
    logbook = Logbook(run_dir)
    logbook.result("test", result, step)
    pngs = []
    if opts.pictures:
        pngs = log_pictures(logbook, model, data, "test", result, step, run_dir / rundir.FIGURES, prefix="test_",
                            seed=seed)
    result = {"run": str(run_dir), "checkpoint": rundir.checkpoint(run_dir, opts.checkpoint).name, "step": step,
              "split": "test", "prior": type(model.prior).__name__,
              "kl_estimate": "analytic" if model.prior.analytic_kl else "single-sample Monte-Carlo",
              "representation": opts.representation, **result,
              "figures": [str(p.relative_to(run_dir)) for p in pngs],
              "evaluate_s": evaluate_s, "wall_s": time.perf_counter() - start}
    logbook.summary(result, rundir.EVAL)
    logbook.close()
    return result


def metric_sizes(opts):
    sizes = opts.metric_sizes
    return OmegaConf.to_container(sizes) if OmegaConf.is_dict(sizes) else sizes


def udr_runs(opts):
    """The run directories UDR scores together: `runs` as given, or every run under `sweep`."""
    if opts.sweep:
        from vae_lab.compare.table import find_runs  # the one way to find a sweep's runs; torch-free

        return find_runs([opts.sweep])
    return [Path(r) for r in opts.runs]


def evaluate_udr(opts):
    """UDR (Duan et al. 2020) of runs trained on the same data, each against the others: `udr` and `udr_detail`
    written into each run's eval.json (the rest of it kept, or an eval.json holding only them). Returns
    {run: its UDR}."""
    run_dirs = udr_runs(opts)
    if len(run_dirs) < 2:
        raise ConfigError(f"UDR compares a run with others of the same setting: got {len(run_dirs)} run(s); give "
                          "runs=[<dir>,<dir>,...] or a sweep= of several seeds")
    loaded = [load_run(opts, d) for d in run_dirs]
    # the same data up to the dataset's own seed (a static binarisation's draw, a noise of the run like its init)
    datasets = {repr({k: v for k, v in OmegaConf.to_container(cfg.dataset, resolve=True).items() if k != "seed"})
                for _, cfg, _, _, _ in loaded}
    if len(datasets) > 1:
        raise ConfigError(f"UDR needs runs trained on the same data: {', '.join(map(str, run_dirs))} have "
                          f"{len(datasets)} different dataset configs")
    data = loaded[0][2]
    seed = 0 if opts.seed is None else opts.seed  # disentanglement_lib's evaluation.random_seed
    start = time.perf_counter()
    out = udr_results([model for *_, model, _ in loaded], data, metric_sizes(opts), seed, opts.batch_size)
    seconds = round(time.perf_counter() - start, 2)
    scores = {}
    for i, run_dir in enumerate(run_dirs):
        result = rundir.read_json(run_dir / rundir.EVAL) or {"run": str(run_dir)}
        detail = {"runs": [str(d) for d in run_dirs], "checkpoint": opts.checkpoint,
                  "pairwise": {str(d): out["pairwise"][j][i] for j, d in enumerate(run_dirs) if j != i},
                  "informative_dims": out["informative_dims"][i],
                  **{k: out[k] for k in ("n", "protocol", "seed", "sklearn_version")}, "seconds": seconds}
        result.update(udr=out["scores"][i], udr_detail=detail)
        rundir.write_json(run_dir / rundir.EVAL, result)
        scores[str(run_dir)] = out["scores"][i]
    return scores


def table(r):
    """The short report printed at the end: every figure of vae_lab.results.MEASURE that was measured, in its order,
    then the disentanglement metrics' headlines."""
    rows = []
    for key in MEASURE:
        if key.role != MEASUREMENT or key.name not in r:
            continue
        value = r[key.name]
        if value is None:
            text = f"n/a: {r.get(key.note) or 'not measured'}"
        else:
            text = format(value, key.fmt) + (ANNOTATIONS[key.name](r) if key.name in ANNOTATIONS else "")
        rows.append((LABELS[key.name](r) if key.name in LABELS else key.name, text))
    rows[-1:-1] = [("kl per dim, sorted", "  ".join(f"z{j} {v:.2f}" for j, v in r["kl_per_dim_sorted"][:10])),
                   *((k, f"{r[k]:.3f}") for k in headline_keys(METRICS, REPRESENTATIONS) if k in r and k not in MEASURED)]
    rows += [("metrics left out", r["metrics_note"])] if r.get("metrics_note") else []
    width = max(len(k) for k, _ in rows)
    head = (f"{r['run']}: {r['checkpoint']} (step {r['step']}), {r['images']} test images, nats per image, "
            f"{r['wall_s']:.1f} s")
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows), f"wrote {Path(r['run']) / rundir.EVAL}"])


# How the table labels and annotates a figure beyond its value: the sample it was measured on, what bounds it.
LABELS = {
    "iwae_nll": lambda r: f"iwae_nll (k={r['iwae_k']}, {r['iwae_images']} images)",
    "index_code_mi": lambda r: f"index_code_mi (N={r['decomposition_images']})",
}
ANNOTATIONS = {
    "kl": lambda r: "" if r["kl_estimate"] == "analytic" else "  (Monte-Carlo estimate)",
    "iwae_nll": lambda r: f"  (-elbo - iwae_nll = {-r['iwae_elbo'] - r['iwae_nll']:.2f} on those images)",
    "index_code_mi": lambda r: f"  (at most log N = {math.log(r['decomposition_images']):.2f})",
    "active_units": lambda r: f" of {len(r['posterior_mean_var'])}",
    "collapse": lambda r: f" ({r['collapse_reason']})",
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        print("\nOptions (configs/evaluate.yaml):\n")
        print((Path(CONFIG_DIR) / "evaluate.yaml").read_text())
        return
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # a warning on its own line, not inside a progress bar
            opts = options(argv)
            if opts.run:
                result = evaluate(opts)
            else:
                scores = evaluate_udr(opts)
    except ConfigError as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    if opts.run:
        print(table(result))
    else:
        width = max(map(len, scores))
        print("\n".join(f"  {run:<{width}}  udr {score:.3f}" for run, score in scores.items()))
        print(f"wrote udr into {len(scores)} eval.json files")


if __name__ == "__main__":
    main()
