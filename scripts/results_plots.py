"""Figures of docs/results.md that vae-compare does not draw, from run directories.

  python scripts/results_plots.py capacity RUN [RUN ...] --out docs/results/capacity.png
  python scripts/results_plots.py beta SWEEP_OR_RUN [...] --out docs/results/beta
  python scripts/results_plots.py bound RUN/eval_k*.json [...] --out docs/results/bound.png
  python scripts/results_plots.py training SWEEP_OR_RUN [...] --out docs/results/beta_training.png

capacity: the training KL (train/kl) against the capacity C(step) the objective aimed at (train/capacity), one line
per run, and the mean and largest |KL - C| once the ramp has started (Burgess et al. 2018 advise tuning gamma
until the KL follows C to within about a nat).

beta: for runs evaluated by vae-eval (eval.json), each setting (the penalty option and kl.beta) with its seeds: every
disentanglement metric, the KL, its total correlation and the reconstruction against beta (beta.png), MIG against
reconstruction (mig_vs_recon.png, Chen et al. 2018's comparison of beta-VAE and beta-TCVAE), and the Markdown table
of mean [min, max] over seeds that docs/results.md shows. `--keys` draws and tabulates other eval.json
measurements instead (any key of vae_lab.results, e.g. --keys dci_explicitness infom udr; `--keys all`: the
figures above and then every disentanglement headline some run has).

training: validation figures against the step (metrics.jsonl: MIG, total correlation, KL, reconstruction, active
units), one colour per setting and one line per seed: when, in training, a setting's figures move apart.

bound: the IWAE bound on the test NLL against k (Burda et al. 2016), from eval.json files each written by
`vae-eval ... iwae.k=<k>` and kept under another name; one line per run, the -ELBO of the same images as a mark.
"""
import argparse
import json
import math
from pathlib import Path

from vae_lab import rundir
from vae_lab.compare.table import Row, find_runs
from vae_lab.results import DISENTANGLEMENT, MEASURE, MEASUREMENT, upgrade
from vae_lab.runtime.logbook import read_scalars

PENALTY_NAMES = {"kl": "beta-VAE", "tcvae": "beta-TCVAE"}  # the penalty option's name in the figures
# (eval.json key, what it is): the beta story's figures, disentanglement metrics first
BETA_FIGURES = (("mig_dlib", "MIG (disentanglement_lib)"), ("mig_chen", "MIG (Chen et al.)"),
                ("factor_vae", "FactorVAE score"), ("dci_disentanglement", "DCI disentanglement"), ("sap", "SAP"),
                ("beta_vae", "beta-VAE score"), ("kl", "KL (nats)"), ("total_correlation", "total correlation (nats)"),
                ("index_code_mi", "index-code MI (nats)"), ("dimwise_kl", "dimension-wise KL (nats)"),
                ("recon_nll", "reconstruction NLL (nats)"), ("active_units", "active units"))


def capacity(runs, out, skip_steps):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    report = {}
    for run in runs:
        tags = read_scalars(run)
        kl, cap = tags["train/kl"], dict(tags["train/capacity"])
        gaps = [abs(v - cap[s]) for s, v in kl if s in cap and s > skip_steps]
        name = Path(run).name if Path(run).name.startswith("seed=") else str(run)
        report[name] = {"mean_abs_gap": sum(gaps) / len(gaps), "max_abs_gap": max(gaps), "points": len(gaps),
                        "final_kl": kl[-1][1], "final_capacity": cap[kl[-1][0]]}
        ax.plot([s for s, _ in kl], [v for _, v in kl], lw=1, label=f"train/kl, {name}")
    steps = sorted(cap)
    ax.plot(steps, [cap[s] for s in steps], "k--", lw=1, label="C(step)")
    ax.set(xlabel="step", ylabel="nats per image", title="KL following the capacity C(step) (Burgess et al. 2018)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(json.dumps(report, indent=1))
    print(f"wrote {out}")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def setting(run):
    """(name, penalty, beta) of a run: the objective it trained, seeds aside."""
    penalty, beta = run.values.get("penalty", "kl"), float(run.values["kl.beta"])
    name = PENALTY_NAMES.get(penalty, penalty)
    return f"{name} beta={beta:g}", penalty, beta


def order(run):
    """β-VAE runs first, by beta, then the other penalties; seeds in order."""
    _, penalty, beta = setting(run)
    return penalty != "kl", beta, run.values["seed"]


def spread(values):
    """'mean [min, max]' over seeds (the value alone for one seed)."""
    mean = sum(values) / len(values)
    if all(float(v).is_integer() for v in values):  # counts (active units)
        return f"{mean:g}" if len(values) == 1 else f"{mean:g} [{min(values):g}, {max(values):g}]"
    digits = 2 if max(abs(v) for v in values) >= 10 else 3
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def figures(keys, runs):
    """(key, title) pairs `beta` draws: BETA_FIGURES, the `keys` given, or with ["all"] BETA_FIGURES and then every
    numeric measurement of vae_lab.results that some run's eval.json has."""
    if not keys:
        return BETA_FIGURES
    titles = dict(BETA_FIGURES)
    if keys == ["all"]:
        keys = [*titles, *(k.name for k in (*MEASURE, *DISENTANGLEMENT) if k.role == MEASUREMENT and k.fmt != "s"
                           and k.name not in (*titles, "elbo") and any(f"eval/{k.name}" in r.values for r in runs))]
    return tuple((k, titles.get(k, k)) for k in dict.fromkeys(keys))


def beta(paths, out, keys=None):
    runs = [Row(p) for p in find_runs(paths)]
    evaluated = [r for r in runs if "eval/elbo" in r.values]
    if not evaluated:
        raise SystemExit("beta: no run here has an eval.json (run vae-eval run=<dir> on each)")
    drawn = figures(keys, evaluated)
    groups = {}
    for r in sorted(evaluated, key=order):
        groups.setdefault(setting(r), []).append(r)
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ncol = min(6, len(drawn))
    nrow = math.ceil(len(drawn) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, 3 * nrow), squeeze=False)
    for ax in axes.flat[len(drawn):]:
        ax.axis("off")
    for ax, (key, title) in zip(axes.flat, drawn):
        for penalty in dict.fromkeys(p for _, p, _ in groups):
            at = [(b, [r.values.get(f"eval/{key}", math.nan) for r in members])
                  for (_, p, b), members in groups.items() if p == penalty]
            marker = "o-" if penalty == "kl" else "s"
            xs = [b for b, vs in at for _ in vs]
            line = ax.plot([b for b, _ in at], [sum(vs) / len(vs) for _, vs in at], marker, ms=4,
                           label="beta-VAE (mean, seeds as dots)" if penalty == "kl" else
                           f"{PENALTY_NAMES.get(penalty, penalty)} (mean)")
            ax.plot(xs, [v for _, vs in at for v in vs], ".", color=line[0].get_color(), alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="beta", title=title)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("beta-VAE and beta-TCVAE on sprites (dSprites): vae-eval's figures against beta", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "beta.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (name, _, _), members in groups.items():
        ax.plot([r.values["eval/recon_nll"] for r in members],
                [r.values.get("eval/mig_chen", math.nan) for r in members], "o", label=name)
    ax.set(xlabel="reconstruction NLL (nats per image)", ylabel="MIG (Chen et al.)",
           title="MIG against reconstruction (cf. Chen et al. 2018)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "mig_vs_recon.png", dpi=110)
    plt.close(fig)

    header = ["setting", "seeds", "ELBO", *(k for k, _ in drawn)]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for (name, _, _), members in groups.items():
        cells = [spread([r.values[f"eval/{k}"] for r in members]) if all(f"eval/{k}" in r.values for r in members)
                 else "n/a" for k in ("elbo", *(k for k, _ in drawn))]  # n/a: a metric vae-eval skipped
        print(f"| {name} | {len(members)} | " + " | ".join(cells) + " |")
    print("\nKL per dimension, largest first (nats, eval.json kl_per_dim_sorted):")
    for (name, _, _), members in groups.items():
        for r in members:
            dims = (rundir.read_json(r.path / rundir.EVAL) or {}).get("kl_per_dim_sorted", [])
            print(f"  {name} seed={r.values['seed']}: " + "  ".join(f"z{d} {v:.2f}" for d, v in dims))
    print(f"wrote {out / 'beta.png'}, {out / 'mig_vs_recon.png'}")


# (metrics.jsonl key, what it is): the validation figures `training` draws against the step
TRAINING_FIGURES = (("mig_dlib", "validation MIG (disentanglement_lib, posterior means)"),
                    ("total_correlation", "total correlation (nats)"), ("kl", "KL (nats)"),
                    ("recon_nll", "reconstruction NLL (nats)"), ("active_units", "active units"))


def training(paths, out):
    runs = sorted((Row(p) for p in find_runs(paths)), key=order)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(TRAINING_FIGURES), figsize=(3.6 * len(TRAINING_FIGURES), 3.4), squeeze=False)
    colours = {}
    for r in runs:
        lines = [upgrade(json.loads(line)) for line in (r.path / rundir.METRICS).read_text().splitlines() if line.strip()]
        name = setting(r)[0]
        colour = colours.setdefault(name, f"C{len(colours)}")
        for ax, (key, _) in zip(axes.flat, TRAINING_FIGURES):
            points = [(m["step"], m[key]) for m in lines if isinstance(m.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), color=colour, lw=1, ls="-" if r.values["seed"] == 0 else "--",
                        label=f"{name}, seed {r.values['seed']}")
    for ax, (_, title) in zip(axes.flat, TRAINING_FIGURES):
        ax.set(xlabel="step", title=title)
        ax.title.set_fontsize(9)
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out}")


def bound(files, out):
    runs = {}
    for f in map(Path, files):
        result = json.loads(f.read_text())
        runs.setdefault(result.get("run", str(f.parent)), []).append(result)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, results in runs.items():
        results.sort(key=lambda r: r["iwae_k"])
        name = Path(run).name if Path(run).name.startswith("seed=") else run
        line = ax.plot([r["iwae_k"] for r in results], [r["iwae_nll"] for r in results], "o-", label=name)
        ax.axhline(-results[0]["iwae_elbo"], color=line[0].get_color(), ls=":", lw=0.8)
        print(f"{name}: -ELBO {-results[0]['iwae_elbo']:.2f}; " +
              ", ".join(f"k={r['iwae_k']} {r['iwae_nll']:.2f}" for r in results))
    ax.set_xscale("log")
    ax.set(xlabel="k (importance samples)", ylabel="IWAE bound on the test NLL (nats)",
           title="The k-sample bound against k (Burda et al. 2016); dotted: -ELBO")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="figure", required=True)
    cap = sub.add_parser("capacity", help="training KL against C(step)")
    cap.add_argument("runs", nargs="+")
    cap.add_argument("--out", required=True)
    cap.add_argument("--skip-steps", type=int, default=250, help="gaps counted after this step (the first steps "
                     "fit the reconstruction before the KL can follow)")
    bet = sub.add_parser("beta", help="the beta story's figures against beta, and its table")
    bet.add_argument("paths", nargs="+", help="sweep or run directories")
    bet.add_argument("--out", required=True, help="a directory for beta.png and mig_vs_recon.png")
    bet.add_argument("--keys", nargs="+", metavar="KEY", help="eval.json measurements to draw and tabulate instead "
                     "of the default figures (all: those and every disentanglement headline present)")
    bnd = sub.add_parser("bound", help="the IWAE bound against k")
    bnd.add_argument("files", nargs="+", help="eval.json files of vae-eval runs with different iwae.k")
    bnd.add_argument("--out", required=True)
    trn = sub.add_parser("training", help="validation figures against the step, per setting and seed")
    trn.add_argument("paths", nargs="+", help="sweep or run directories")
    trn.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.figure == "training":
        training(args.paths, args.out)
    elif args.figure == "capacity":
        capacity(args.runs, args.out, args.skip_steps)
    elif args.figure == "beta":
        beta(args.paths, args.out, args.keys)
    else:
        bound(args.files, args.out)


if __name__ == "__main__":
    main()
