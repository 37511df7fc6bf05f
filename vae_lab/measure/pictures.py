"""Pictures of a VAE: reconstructions, prior samples, latent traversals, the 2-D manifold and latent scatter,
KL per dimension. Image grids go through the run's Logbook (vae_lab.runtime.logbook); plots use matplotlib (Agg),
imported when drawn."""
from pathlib import Path

import torch

from vae_lab.measure.collapse import informative_dims
from vae_lab.model import eval_mode

TRAVERSAL_STEPS = 9
TRAVERSAL_DIMS = 10


@torch.no_grad()
def latent_range(prior, generator, low=0.02, high=0.98, n=10_000):
    """Per-dimension quantiles (2, D) of p(z), from n samples: the sweep range for traversals and the manifold."""
    z = prior.sample(n, generator)
    return torch.quantile(z, torch.tensor([low, high], device=z.device, dtype=z.dtype), dim=0)


def _decode(model, z):
    return model.likelihood.mean(model.decoder(z).float())


@torch.no_grad()
def reconstructions(model, x, generator=None):
    """Inputs above their reconstructions (likelihood means), for make_grid with nrow = len(x)."""
    terms = model(x, generator=generator)
    return torch.cat([x, model.likelihood.mean(terms.params)])


@torch.no_grad()
def prior_samples(model, n, generator):
    return _decode(model, model.prior.sample(n, generator))


@torch.no_grad()
def traversals(model, x0, dims, lo, hi, steps=TRAVERSAL_STEPS):
    """One row per dimension j in `dims`: z_j swept from lo[j] to hi[j], the others at x0's posterior mean."""
    mean = model.encoder(x0[:1])[0].float()  # (1, D)
    rows = []
    for j in dims:
        z = mean.repeat(steps, 1)
        z[:, j] = torch.linspace(float(lo[j]), float(hi[j]), steps, device=z.device)
        rows.append(z)
    return _decode(model, torch.cat(rows))  # (len(dims) * steps, C, H, W)


@torch.no_grad()
def manifold(model, lo, hi, n=15):
    """For latent_dim == 2: decoded images on an n x n grid, z_0 left to right, z_1 bottom to top (Keras VAE example)."""
    z0 = torch.linspace(float(lo[0]), float(hi[0]), n, device=lo.device)
    z1 = torch.linspace(float(hi[1]), float(lo[1]), n, device=lo.device)
    grid = torch.stack(torch.meshgrid(z1, z0, indexing="ij")[::-1], -1).reshape(n * n, 2)
    return _decode(model, grid)


@torch.no_grad()
def posterior_means(model, data, split, n, batch_size=1000):
    """Posterior means (n, D) of the first n images of `split` and their labels (n,) or None."""
    means, labels = [], []
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n), device=data.device)
        means.append(model.encoder(data.batch(split, index))[0].float())
        labels.append(data.labels(split, index))
    return torch.cat(means), (None if labels[0] is None else torch.cat(labels))


def scatter_plot(means, labels):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100, layout="tight")
    ax = fig.add_subplot()
    m = means.cpu().numpy()
    art = ax.scatter(m[:, 0], m[:, 1], s=2, c=None if labels is None else labels.cpu().numpy(), cmap="tab10")
    if labels is not None:
        fig.colorbar(art, ax=ax, label="label")
    ax.set(xlabel="z[0]", ylabel="z[1]", title="posterior means E[z|x]")
    return fig


def kl_bar_plot(result):
    """KL per latent dimension, largest first; for priors whose KL does not split, Var_x(E[z_j|x]) instead."""
    from matplotlib.figure import Figure

    split = len(result["kl_per_dim"]) == len(result["posterior_mean_var"])
    values = result["kl_per_dim"] if split else result["posterior_mean_var"]
    order = sorted(range(len(values)), key=lambda j: -values[j])
    fig = Figure(figsize=(max(4, 0.4 * len(values) + 2), 3.5), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.bar(range(len(order)), [values[j] for j in order])
    ax.set_xticks(range(len(order)), [f"z{j}" for j in order])
    ax.set(ylabel="KL (nats per image)" if split else "Var_x(E[z_j|x])",
           title=f"{'KL per dimension' if split else 'posterior-mean variance (KL does not split)'}; "
                 f"{result['active_units']} active")
    return fig


@torch.no_grad()
def log_pictures(logbook, model, data, split, result, step, out_dir, prefix="", seed=0, plots=True):
    """Every picture of `model` on `split`, to TensorBoard under `split/` and as PNGs `out_dir/<prefix><name>.png`.

    `result` is measure()'s (it ranks the dimensions). plots=False skips the matplotlib plots.
    Returns the PNG paths written.
    """
    with eval_mode(model):
        return _log_pictures(logbook, model, data, split, result, step, Path(out_dir), prefix, seed, plots)


def _log_pictures(logbook, model, data, split, result, step, out_dir, prefix, seed, plots):
    written = []
    g = torch.Generator(device=data.device).manual_seed(seed)

    def grid(name, images, nrow):
        written.append(out_dir / f"{prefix}{name}.png")
        logbook.image_grid(f"{split}/{name}", images, step, nrow=nrow, png=written[-1])

    def plot(name, fig):
        written.append(out_dir / f"{prefix}{name}.png")
        logbook.plot(f"{split}/{name}", fig, step, png=written[-1])

    x = data.batch(split, torch.arange(min(8, data.size(split)), device=data.device), g)
    grid("reconstructions", reconstructions(model, x, g), len(x))
    grid("prior_samples", prior_samples(model, 64, g), 8)
    lo, hi = latent_range(model.prior, g)
    dims = informative_dims(result, TRAVERSAL_DIMS)
    grid("traversals", traversals(model, x[:1], dims, lo, hi), TRAVERSAL_STEPS)
    if lo.numel() == 2:
        grid("manifold", manifold(model, lo, hi), 15)
    if plots:
        plot("kl_per_dim", kl_bar_plot(result))
        if lo.numel() == 2:
            plot("latent_scatter", scatter_plot(*posterior_means(model, data, split, min(5000, data.size(split)))))
    return written
