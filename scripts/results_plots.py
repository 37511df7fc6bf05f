"""Figures of docs/results.md that vae-compare does not draw, from run directories.

  python scripts/results_plots.py capacity RUN [RUN ...] --out docs/results/capacity.png

capacity: the training KL (train/kl) against the capacity C(step) the objective aimed at (train/capacity), one line
per run, and the mean and largest |KL - C| once the ramp has started (Burgess et al. 2018 advise tuning gamma
until the KL follows C to within about a nat).
"""
import argparse
import json
from pathlib import Path


def scalars(run, tag):
    """[(step, value), ...] of a TensorBoard scalar of one run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def capacity(runs, out, skip_steps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    report = {}
    for run in runs:
        kl, cap = scalars(run, "train/kl"), dict(scalars(run, "train/capacity"))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="figure", required=True)
    cap = sub.add_parser("capacity", help="training KL against C(step)")
    cap.add_argument("runs", nargs="+")
    cap.add_argument("--out", required=True)
    cap.add_argument("--skip-steps", type=int, default=250, help="gaps counted after this step (the first steps "
                     "fit the reconstruction before the KL can follow)")
    args = ap.parse_args()
    capacity(args.runs, args.out, args.skip_steps)


if __name__ == "__main__":
    main()
