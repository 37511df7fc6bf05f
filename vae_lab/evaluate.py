"""vae-eval: a trained run's test-split figures and pictures, written into its own directory.

    vae-eval run=<run dir> [checkpoint=last|best] [iwae.k=1000] [max_images=null] [pictures=true] ...

Writes <run>/eval.json, TensorBoard scalars and images under test/, and PNGs <run>/figures/test_*.png.
"""
import logging
import math
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from vae_lab import rundir
from vae_lab.checks import ConfigError, choice, first_line, number, positive_int, resolve_device
from vae_lab.measure.disentanglement import METRICS, PRESETS, headline_figures, headline_keys
from vae_lab.measure.elbo import measure
from vae_lab.runtime import checkpoint
from vae_lab.runtime.build import build, build_model
from vae_lab.runtime.config import CONFIG_DIR
from vae_lab.runtime.logbook import RunLog

PROG = "vae-eval"


def options(argv):
    """configs/evaluate.yaml with the `key=value` overrides of `argv`, composed by Hydra (vae-train's syntax), checked.

    Composed rather than run as a Hydra app: vae-eval writes into the run it evaluates, never an output directory.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    base = OmegaConf.load(Path(CONFIG_DIR) / "evaluate.yaml")
    for arg in argv:
        if "=" not in arg and not arg.startswith("~"):
            raise ConfigError(f"{arg!r}: arguments are key=value, e.g. run=outputs/runs/<date>/<time>")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=PROG):
            opts = compose("evaluate", overrides=[_quoted(arg) for arg in argv])
    except HydraException as e:  # a bad override or an unknown key: Hydra's message, first line
        raise ConfigError(f"{first_line(e)} (keys: {', '.join(_keys(OmegaConf.to_container(base)))})") from None
    if OmegaConf.is_missing(opts, "run"):
        raise ConfigError("run: required; give the run directory, e.g. vae-eval run=outputs/runs/<date>/<time>")
    for key, node in base.items_ex(resolve=False):
        if OmegaConf.is_dict(node) and not OmegaConf.is_dict(opts[key]):
            raise ConfigError(f"{key}={opts[key]}: {key} holds keys; set them one by one, e.g. {key}.{next(iter(node))}=...")
    choice("checkpoint", opts.checkpoint, ("last", "best"))
    choice("device", opts.device, ("auto", "cpu", "cuda"))
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
    if not OmegaConf.is_list(opts.metrics):
        raise ConfigError(f"metrics={opts.metrics}: must be a list, e.g. metrics=[mig_dlib,dci] (or [] for none)")
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
    return opts


def _quoted(arg):
    """`key=value` with the value quoted when it holds a `=`, as a sweep job's directory does
    (run=outputs/sweeps/<date>/kl.beta=4/seed=0): Hydra's override grammar takes `=` only inside quotes."""
    key, _, value = arg.partition("=")
    if "=" not in value or value[:1] in "'\"":
        return arg
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _keys(node, prefix=""):
    for k, v in node.items():
        yield from (_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])


def load_run(opts):
    """The run's config, data, and model with the checkpoint's weights; raises ConfigError before writing anything."""
    run_dir = Path(opts.run)
    cfg = rundir.config(run_dir, key="run")
    ckpt_path = run_dir / "checkpoints" / f"{opts.checkpoint}.pt"
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


def run(opts):
    """Evaluate on the test split and write eval.json, TensorBoard test/ entries and figures/test_*.png."""
    start = time.perf_counter()
    run_dir, cfg, data, model, state = load_run(opts)
    seed = cfg.seed if opts.seed is None else opts.seed
    step = int(state.get("step", 0))
    figures = measure(model, data, "test", opts.max_images, opts.batch_size, seed=seed,
                       iwae_k=opts.iwae.k, iwae_images=opts.iwae.images, iwae_chunk=opts.iwae.chunk,
                       decomposition_images=opts.decomposition_images, progress=True)
    if data.factor_names and opts.metrics:
        sizes = opts.metric_sizes
        sizes = OmegaConf.to_container(sizes) if OmegaConf.is_dict(sizes) else sizes
        figures.update(headline_figures(model, data, list(opts.metrics), sizes, seed))
    evaluate_s = time.perf_counter() - start
    runlog = RunLog(run_dir)
    runlog.figures("test", figures, step)
    pngs = []
    if opts.pictures:
        from vae_lab.measure.pictures import log_pictures

        pngs = log_pictures(runlog, model, data, "test", figures, step, run_dir / "figures", prefix="test_", seed=seed)
    result = {"run": str(run_dir), "checkpoint": f"{opts.checkpoint}.pt", "step": step, "split": "test",
              "prior": type(model.prior).__name__, "kl_estimate": "analytic" if model.prior.analytic_kl else
              "single-sample Monte-Carlo", **figures, "mig": figures.get("mig"), "mig_per_factor": figures.get("mig_per_factor"),
              "figures": [str(p.relative_to(run_dir)) for p in pngs],
              "evaluate_s": evaluate_s, "wall_s": time.perf_counter() - start}
    runlog.summary(result, rundir.EVAL)
    runlog.close()
    return result


def table(r):
    """The short report printed at the end."""
    rows = [("elbo", f"{r['elbo']:.2f}"), ("recon_nll", f"{r['recon_nll']:.2f}"),
            ("kl", f"{r['kl']:.3f}" + ("" if r["kl_estimate"] == "analytic" else "  (Monte-Carlo estimate)")),
            ("bits_per_dim", f"{r['bits_per_dim']:.4f}" if r["bits_per_dim"] is not None else f"n/a: {r['bits_per_dim_note']}")]
    if "iwae_nll" in r:
        rows.append((f"iwae_nll (k={r['iwae_k']}, {r['iwae_images']} images)",
                     f"{r['iwae_nll']:.2f}  (-elbo - iwae_nll = {-r['iwae_elbo'] - r['iwae_nll']:.2f} on those images)"))
    n = r["decomposition_images"]
    rows += [(f"index_code_mi (N={n})", f"{r['index_code_mi']:.3f}  (at most log N = {math.log(n):.2f})"),
             ("total_correlation", f"{r['total_correlation']:.3f}"),
             ("dimwise_kl", "n/a (prior not factorised)" if r["dimwise_kl"] is None else f"{r['dimwise_kl']:.3f}"),
             ("active_units", f"{r['active_units']} of {len(r['posterior_mean_var'])}"),
             ("kl per dim, sorted", "  ".join(f"z{j} {v:.2f}" for j, v in r["kl_per_dim_sorted"][:10])),
             ("mig (val-style, test split)", "n/a (no ground-truth factors)" if r["mig"] is None else f"{r['mig']:.3f}"),
             *((k, f"{r[k]:.3f}") for k in headline_keys(METRICS) if k in r),
             ("collapse", f"{r['collapse']} ({r['collapse_reason']})")]
    width = max(len(k) for k, _ in rows)
    head = (f"{r['run']}: {r['checkpoint']} (step {r['step']}), {r['images']} test images, nats per image, "
            f"{r['wall_s']:.1f} s")
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows), f"wrote {Path(r['run']) / 'eval.json'}"])


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
            result = run(options(argv))
    except ConfigError as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    print(table(result))


if __name__ == "__main__":
    main()
