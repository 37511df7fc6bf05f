"""vae-compare's plots: the rate-distortion plane, each measurement against every numeric swept key, and a study's
distributions over seeds per model and setting (Locatello et al. 2019's figures), as PNGs."""
import math

from vae_lab.compare.table import columns, decades, differing, finite, fmt, label, sort_key
from vae_lab.rundir import Status


def plot(runs, out_dir):
    """The rate-distortion plane and each figure against every numeric swept key, as PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = differing(runs)
    done = [r for r in runs if r.values.get("status") == Status.COMPLETED
            and all(finite(r.values.get(f"val/{k}")) for k in ("kl", "recon_nll"))]
    written = []
    if done:
        written.append(rate_distortion(plt, done, keys, out_dir / "rate_distortion.png"))
    measured = [c for c in columns(done) if c.startswith(("val/", "eval/"))
               and any(finite(r.values.get(c)) for r in done)] if done else []
    for key in (k for k in keys if k != "seed"):  # a figure against the seed says nothing
        xs = [r.overrides.get(key) for r in done]
        if measured and len(set(xs)) > 1 and all(finite(x) for x in xs):
            written.append(against(plt, done, key, [k for k in keys if k != key], measured,
                                   out_dir / f"vs_{key.replace('/', '_')}.png"))
    groups = models(done)
    if len(groups) > 1 or any(len(members) > 1 for _, settings in groups.values() for members in settings.values()):
        for column in (c for c in measured if c.startswith("eval/")):  # eval.json's: the study's scores
            written.append(study(plt, groups, column, out_dir / f"study_{column.removeprefix('eval/')}.png"))
    return written


def model(run):
    """What a run trained, as a study names it: its `experiment` option (a preset such as locatello_factor_vae),
    else its `penalty` option, else "runs"."""
    return run.values.get("experiment") or run.values.get("penalty") or "runs"


def models(runs):
    """{model: (keys, {setting: [runs]})}, models in the order they first appear and settings in the order of their
    values: `keys` are the overrides that differ among the model's runs, the seed and the experiment left out, and a
    run's setting its value of the one key (or key=value of several; "all" where none differs), so that each
    setting's runs are its seeds."""
    by_model = {}
    for r in runs:
        by_model.setdefault(model(r), []).append(r)
    out = {}
    for name, members in by_model.items():
        keys = [k for k in differing(members) if k not in ("seed", "experiment")]
        settings = {}
        for r in sorted(members, key=lambda r: [sort_key(r.overrides.get(k)) for k in keys]):
            setting = fmt(r.overrides.get(keys[0])) if len(keys) == 1 else label(r, keys) if keys else "all"
            settings.setdefault(setting, []).append(r)
        out[name] = (keys, settings)
    return out


def study(plt, groups, column, path):
    """`column` over the seeds of each setting, one panel per model: a box over the seeds and every seed a dot, the
    shape of Locatello et al. 2019's figures (their violins need more than the few seeds a run here has)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(max(3.2 * len(groups), 4.5), 3.4), squeeze=False, sharey=True)
    for ax, (name, (keys, settings)) in zip(axes.flat, groups.items()):
        values = [[r.values[column] for r in members if finite(r.values.get(column))] for members in settings.values()]
        at = [i for i, v in enumerate(values) if v]
        if at:
            ax.boxplot([values[i] for i in at], positions=at, widths=0.5, showfliers=False,
                       medianprops={"color": "black"})
        for i in at:
            spread = [0.0] if len(values[i]) == 1 else [0.24 * (2 * j / (len(values[i]) - 1) - 1)
                                                         for j in range(len(values[i]))]
            ax.plot([i + d for d in spread], values[i], "o", ms=3.5, alpha=0.7, color="tab:blue", zorder=3)
        ax.set_xticks(range(len(settings)), list(settings), rotation=45 if max(map(len, settings)) > 6 else 0,
                      fontsize=8)
        ax.set(title=name, xlabel=keys[0] if len(keys) == 1 else "setting", xlim=(-0.6, len(settings) - 0.4))
    axes.flat[0].set_ylabel(column)
    fig.suptitle(f"{column} over seeds, per model and setting", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rate_distortion(plt, runs, keys, path):
    # Alemi et al. 2018, "Fixing a Broken ELBO": rate R = KL(q(z|x) || p(z)), distortion D = -E_q log p(x|z);
    # -ELBO = D + R, so runs of equal ELBO lie on a line of slope -1.
    rate = [r.values["val/kl"] for r in runs]
    dist = [r.values["val/recon_nll"] for r in runs]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    numeric = [k for k in keys if k != "seed" and all(finite(r.overrides.get(k)) for r in runs)]
    if numeric:  # colour by the first numeric swept key
        import matplotlib.colors

        c = [r.overrides[numeric[0]] for r in runs]
        norm = matplotlib.colors.LogNorm() if decades(c) else None
        fig.colorbar(ax.scatter(rate, dist, c=c, norm=norm, s=18, zorder=3), ax=ax, label=numeric[0])
    else:
        ax.scatter(rate, dist, s=18, zorder=3)
    if len(runs) <= 40:
        for r, x, y in zip(runs, rate, dist):
            ax.annotate(label(r, keys), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    best = min(x + y for x, y in zip(rate, dist))
    ax.margins(x=0.25 if len(runs) <= 40 else 0.05, y=0.08)  # room for the labels
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.plot(xlim, [best - xlim[0], best - xlim[1]], "--", color="grey", lw=0.8, label=f"best ELBO: R + D = {best:.2f}")
    ax.set(xlim=xlim, ylim=ylim, xlabel="rate: KL (nats per image)",
           ylabel="distortion: reconstruction NLL (nats per image)", title="Rate-distortion plane (Alemi et al. 2018)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def against(plt, runs, key, others, measured, path):
    """Each column against `key`: one line per combination of the other swept keys through the mean over seeds,
    with every run as a dot; dots only when there are too many combinations."""
    others = [k for k in others if k != "seed"]
    groups = {}
    for r in sorted(runs, key=lambda r: [sort_key(r.overrides.get(k)) for k in others]):
        groups.setdefault(label(r, others) if others else "", []).append(r)
    lines = len(groups) <= 10
    xs = [r.overrides[key] for r in runs]
    ncol = min(len(measured), 4)
    nrow = math.ceil(len(measured) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3 * nrow), squeeze=False)
    for ax, column in zip(axes.flat, measured):
        for name, members in groups.items():
            at = {}
            for r in members:
                if finite(r.values.get(column)):
                    at.setdefault(r.overrides[key], []).append(r.values[column])
            if not at:
                continue
            dots = ax.plot(*zip(*[(x, v) for x, vs in at.items() for v in vs]), "o", ms=3, alpha=0.6)
            if lines:
                x_mean = sorted((x, sum(vs) / len(vs)) for x, vs in at.items())
                ax.plot(*zip(*x_mean), "-", color=dots[0].get_color(), label=name or None)
        if decades(xs):
            ax.set_xscale("log")
            ax.minorticks_off()
        if len(set(xs)) <= 8:  # a grid: a tick at each value swept
            ax.set_xticks(sorted(set(xs)), [fmt(x) for x in sorted(set(xs))])
        ax.set(xlabel=key, title=column)
    for ax in axes.flat[len(measured):]:
        ax.axis("off")
    if lines and others:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
