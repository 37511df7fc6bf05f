"""Disentanglement metrics against ground-truth factors, each computed as the code that published it computes it.

`data` is an ImageData with factors: `factor_names`, `factor_sizes`, `sample_factors(n, generator)` and
`images_for_factors(factors)`. `represent` maps images (n, C, H, W) to codes (n, D), numpy or torch: the posterior
means for every metric but Chen et al.'s MIG, whose `encode` returns (mean, log_var). Each metric draws its own
factors from a generator seeded with `seed`, so its figure does not depend on which other metrics ran.

Every function's defaults are the published protocol (FULL below); QUICK is the smaller preset `vae-eval` uses.
disentanglement_lib pins no scikit-learn; the versions of its study (Locatello et al. 2019, before 0.22) defaulted
LogisticRegression to liblinear one-vs-rest where today's default is multinomial lbfgs, so the classifier-based
figures drift with the version and `disentanglement()` records the one it ran with.
"""
import math
import sys
import time
import warnings

import numpy as np
import torch
from tqdm import tqdm

BINS = 20  # histogram bins per code dimension (disentanglement_lib, unsupervised_study_v1/metric_configs/mig.gin)

# The published protocols: disentanglement_lib/config/unsupervised_study_v1/metric_configs/*.gin, and for Chen's MIG
# rtqichen/beta-tcvae disentanglement_metrics.py (every image of the grid, 10,000 samples per entropy).
FULL = {
    "mig_dlib": {"n": 10_000},
    "mig_chen": {"n_images": None, "n_samples": 10_000},  # n_images None: the whole factor grid
    "factor_vae": {"n_var": 10_000, "n_train": 10_000, "n_eval": 5_000, "batch": 64},
    "dci": {"n_train": 10_000, "n_test": 5_000, "n_estimators": 100},
    "sap": {"n_train": 10_000, "n_test": 5_000},
    "beta_vae": {"n_train": 10_000, "n_eval": 5_000, "batch": 64},
}
# vae-eval's default: the same statistics on smaller samples (fewer points, votes and trees, and Chen's entropies over
# 10,000 grid points instead of all), sized for about a minute on a two-core CPU with an MLP encoder. Figures on
# QUICK and on FULL are not interchangeable (smaller samples bias MI upwards and accuracies are noisier); the
# result's "protocol" says which sizes were used.
QUICK = {
    "mig_dlib": {"n": 10_000},
    "mig_chen": {"n_images": 10_000, "n_samples": 2_000},
    "factor_vae": {"n_var": 5_000, "n_train": 1_000, "n_eval": 500, "batch": 64},
    "dci": {"n_train": 2_000, "n_test": 1_000, "n_estimators": 20},
    "sap": {"n_train": 2_000, "n_test": 1_000},
    "beta_vae": {"n_train": 1_000, "n_eval": 500, "batch": 64},
}
PRESETS = {"full": FULL, "quick": QUICK}


# ---- helpers: sampling codes for drawn factors --------------------------------------------------------------------

def _numpy(x):
    """A torch tensor or array-like as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _bar(progress, total, desc, unit="it"):
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=not progress,
                leave=True, dynamic_ncols=True)


def _check(data):
    if not data.factor_sizes:
        raise ValueError(f"{type(data).__name__} has no ground-truth factors: the disentanglement metrics need them")


def _generators(data, seed):
    """(factor generator on the CPU, image generator on the data's device for dynamic binarisation), both seeded."""
    device = getattr(data, "device", torch.device("cpu"))
    return torch.Generator().manual_seed(seed), torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def _represent(represent, data, factors, image_g, batch_size, bar=None):
    """Codes (n, D) float64 for the factor classes (n, K), `batch_size` images at a time."""
    out = []
    for start in range(0, len(factors), batch_size):
        chunk = factors[start : start + batch_size]
        out.append(_numpy(represent(data.images_for_factors(chunk, image_g))))
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(out)


def _sample_codes(represent, data, n, g, image_g, batch_size, bar=None):
    """n i.i.d. points: factors uniform over the grid, their images' codes. Returns (codes (n, D), factors (n, K))."""
    factors = data.sample_factors(n, g)
    return _represent(represent, data, factors, image_g, batch_size, bar), factors.cpu().numpy()


def _train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, desc):
    """Two independent i.i.d. samples, ((codes, factors) of n_train points, (codes, factors) of n_test points)."""
    g, image_g = _generators(data, seed)
    with _bar(progress, n_train + n_test, f"{desc}: encode", "img") as bar:
        return (_sample_codes(represent, data, n_train, g, image_g, batch_size, bar),
                _sample_codes(represent, data, n_test, g, image_g, batch_size, bar))


def unravel(index, sizes):
    """Factor classes (n, K) of the flat row-major grid positions `index` (n,), factors of `sizes` (K,)."""
    out = []
    for size in reversed(sizes):
        out.append(index % size)
        index = index // size
    return torch.stack(out[::-1], 1)


# ---- MIG, disentanglement_lib's convention -----------------------------------------------------------------------

def discretise(codes, bins=BINS):
    """(N, D) codes -> (N, D) bin indices 0..bins-1: `bins` equal-width bins between each column's min and max, with
    np.histogram's edges and the maximum in the last bin (disentanglement_lib utils.py, _histogram_discretize)."""
    codes = _numpy(codes)
    out = np.empty(codes.shape, dtype=np.int64)
    for j, column in enumerate(codes.T):
        out[:, j] = np.digitize(column, np.histogram_bin_edges(column, bins)[:-1]) - 1
    return out


def discrete_mi(a, b):
    """I(a; b) in nats of two (N,) integer sequences, from their joint histogram (sklearn's mutual_info_score)."""
    a, b = np.unique(np.asarray(a), return_inverse=True)[1], np.unique(np.asarray(b), return_inverse=True)[1]
    na, nb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / len(a)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def entropy(a):
    """H(a) in nats of an (N,) integer sequence, from its histogram."""
    p = np.unique(np.asarray(a), return_counts=True)[1] / len(a)
    return float(-(p * np.log(p)).sum())


def mig_dlib_codes(codes, factors, names=None, bins=BINS):
    """Chen et al. 2018, eq. 6, as disentanglement_lib's mig.py computes it: mean over factors v_k of
    (I(z_a; v_k) - I(z_b; v_k)) / H(v_k), z_a and z_b the two code dimensions, each binned by `discretise`, sharing
    most information with v_k; entropies and MI of the sample's histograms. codes (N, D) (posterior means), factors
    (N, K) classes. A factor constant in the sample (H = 0, where disentanglement_lib divides by zero) is left out.

    Returns (score, {factor name: gap}).
    """
    binned, factors = discretise(codes, bins), np.asarray(_numpy(factors), dtype=np.int64)
    names = list(names or [f"factor{k}" for k in range(factors.shape[1])])
    gaps = {}
    for k, name in enumerate(names):
        h = entropy(factors[:, k])
        if h <= 0:
            continue
        mi = sorted((discrete_mi(binned[:, j], factors[:, k]) for j in range(binned.shape[1])), reverse=True)
        gaps[name] = (mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / h
    return (sum(gaps.values()) / len(gaps) if gaps else 0.0), gaps


def mig_dlib(represent, data, n=10_000, bins=BINS, seed=0, batch_size=2048, progress=False):
    """MIG as disentanglement_lib computes it (Locatello et al. 2019; evaluation/metrics/mig.py): posterior means of
    n images with factors drawn uniformly, `bins` bins per dimension, every factor. Returns {"score", "per_factor"}."""
    _check(data)
    with _bar(progress, n, "mig_dlib: encode", "img") as bar:
        codes, factors = _sample_codes(represent, data, n, *_generators(data, seed), batch_size, bar)
    score, gaps = mig_dlib_codes(codes, factors, data.factor_names, bins)
    return {"score": score, "per_factor": gaps}


# ---- MIG, Chen et al.'s convention -------------------------------------------------------------------------------

def posterior_entropies(z, mean, log_var, n_samples, generator, bar=None, budget=2**23):
    """(D,) H(z_j) = E[-log q(z_j)] with q(z_j) = 1/N sum_n q(z_j|x_n) over the N posteriors given (mean, log_var
    (N, D)), averaged over `n_samples` of the samples z (N, D) drawn at random (all when N is smaller); Chen et al.
    2018, rtqichen/beta-tcvae disentanglement_metrics.py, estimate_entropies, with weights None."""
    n, d = mean.shape
    zs = z[torch.randperm(n, generator=generator)[:n_samples].to(z.device), :, None]  # (S, D, 1)
    # log N(z; m, v) = -(z - m)^2 / (2v) - (log v + log 2 pi) / 2, with the posteriors laid out (D, N) so that the
    # log-sum-exp over n runs along contiguous memory
    mean_t, neg_half_precision = mean.T.contiguous(), (-0.5 * torch.exp(-log_var)).T.contiguous()
    const = (-0.5 * (log_var + math.log(2 * math.pi))).T.contiguous()
    chunk = max(1, budget // (n * d))
    total = torch.zeros(d, dtype=torch.float64, device=z.device)
    for start in range(0, len(zs), chunk):
        log_q = torch.sub(zs[start : start + chunk], mean_t)  # (c, D, N)
        torch.addcmul(const, log_q.square_(), neg_half_precision, out=log_q)  # log q(z_j | x_n)
        total += (math.log(n) - torch.logsumexp(log_q, dim=2)).double().sum(0)  # -log q(z_j), summed over c
        if bar is not None:
            bar.update(len(log_q) * n)  # (sample, posterior) pairs evaluated
    return total.cpu() / len(zs)


def mig_chen(encode, data, n_images=None, n_samples=10_000, leave_out=("shape",), seed=0, batch_size=2048,
             progress=False):
    """MIG as Chen et al. 2018 compute it (rtqichen/beta-tcvae: disentanglement_metrics.py,
    mutual_info_metric_shapes; metric_helpers/mi_metric.py). One sample z ~ q(z|x) per image of the grid; H(z_j)
    from the mixture of all N posteriors, H(z_j | v_k) as the average over the values of v_k of the entropy under
    the mixture of the posteriors sharing that value, each over at most `n_samples` samples; I = H(z_j) - H(z_j|v_k)
    sorted over j and clamped at 0, divided by log |v_k|, gap of the top two, mean over factors. Factors named in
    `leave_out` are skipped (Chen et al. leave dSprites' shape out).

    `encode` maps images to (mean, log_var). n_images None is their protocol, the whole grid; a number takes that
    many distinct grid points at random instead, a smaller "dataset" on which each conditional mixture has about
    n_images / |v_k| components. Returns {"score", "per_factor", "mutual_info" ({factor: [I(z_j; v_k) per j]}),
    "n_images", "n_samples", "whole_grid"}.
    """
    _check(data)
    sizes, names = data.factor_sizes, data.factor_names
    grid = math.prod(sizes)
    g, image_g = _generators(data, seed)
    whole = n_images is None or n_images >= grid
    index = torch.arange(grid) if whole else torch.randperm(grid, generator=g)[:n_images]
    factors = unravel(index, sizes)  # (N, K)
    n = len(factors)
    kept = [k for k, name in enumerate(names) if name not in leave_out]
    means, log_vars = [], []
    with _bar(progress, n, "mig_chen: encode", "img") as bar, torch.no_grad():
        for start in range(0, n, batch_size):
            mean, log_var = encode(data.images_for_factors(factors[start : start + batch_size], image_g))
            means.append(torch.as_tensor(mean).detach().float())
            log_vars.append(torch.as_tensor(log_var).detach().float())
            bar.update(len(means[-1]))
    mean, log_var = torch.cat(means), torch.cat(log_vars)  # (N, D)
    z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=g).to(mean.device)  # one z per image
    groups = {k: [(factors[:, k] == v).nonzero()[:, 0].to(mean.device) for v in range(sizes[k])] for k in kept}
    pairs = min(n, n_samples) * n + sum(min(len(r), n_samples) * len(r) for k in kept for r in groups[k])
    with _bar(progress, pairs, "mig_chen: entropies", "pair") as bar:
        marginal = posterior_entropies(z, mean, log_var, n_samples, g, bar)  # (D,)
        mutual_info = {}
        for k in kept:
            conditional = torch.zeros_like(marginal)
            for rows in groups[k]:  # weight |rows| / N: 1 / |v_k| on the whole grid, as in Chen et al.
                if len(rows):
                    conditional += len(rows) / n * posterior_entropies(z[rows], mean[rows], log_var[rows],
                                                                       n_samples, g, bar)
            mutual_info[names[k]] = marginal - conditional  # (D,)
    gaps = {}
    for k in kept:
        top = torch.sort(mutual_info[names[k]], descending=True).values.clamp(min=0) / math.log(sizes[k])
        gaps[names[k]] = float(top[0] - (top[1] if len(top) > 1 else 0.0))
    return {"score": sum(gaps.values()) / len(gaps) if gaps else 0.0, "per_factor": gaps,
            "mutual_info": {name: mi.tolist() for name, mi in mutual_info.items()},
            "n_images": n, "n_samples": min(n, n_samples), "whole_grid": whole}


# ---- FactorVAE score ---------------------------------------------------------------------------------------------

def _fix_one_factor(data, m, batch, generator):
    """m groups of `batch` factor vectors, one factor (index k (m,)) fixed within each group: (k, factors (m, L, K))."""
    k = torch.randint(len(data.factor_sizes), (m,), generator=generator)
    factors = data.sample_factors(m * batch, generator).view(m, batch, -1)
    rows = torch.arange(m)
    factors[rows, :, k] = factors[rows, :1, k].expand(m, batch)  # the first image's value of factor k for all
    return k.numpy(), factors


def _factor_vae_votes(represent, data, n_votes, batch, g, image_g, global_var, active, batch_size, bar):
    """(K, active dims) votes: for each of n_votes groups of `batch` images sharing one factor k, the active
    dimension with the least variance relative to its global variance votes for k."""
    votes = np.zeros((len(data.factor_sizes), int(active.sum())), dtype=np.int64)
    per_call = max(1, batch_size // batch)
    for start in range(0, n_votes, per_call):
        m = min(per_call, n_votes - start)
        k, factors = _fix_one_factor(data, m, batch, g)
        codes = _represent(represent, data, factors.view(m * batch, -1), image_g, m * batch)
        local_var = codes.reshape(m, batch, -1).var(1, ddof=1)  # (m, D)
        np.add.at(votes, (k, np.argmin(local_var[:, active] / global_var[active], axis=1)), 1)
        bar.update(m)
    return votes


def factor_vae_score(represent, data, n_var=10_000, n_train=10_000, n_eval=5_000, batch=64, threshold=0.05, seed=0,
                     batch_size=2048, progress=False):
    """Kim & Mnih 2018, sec. 4, as disentanglement_lib computes it (evaluation/metrics/factor_vae.py): each
    dimension's variance over n_var random images; dimensions with standard deviation below `threshold` pruned;
    a vote per group of `batch` images sharing one factor (argmin of local / global variance); the majority-vote
    classifier (dimension -> its most frequent factor) fit on n_train votes, its accuracy on those and on n_eval new
    ones. Returns {"train_accuracy", "eval_accuracy", "num_active_dims"}; num_active_dims counts the dimensions
    kept (disentanglement_lib reports the length of its boolean mask, i.e. every dimension).
    """
    _check(data)
    g, image_g = _generators(data, seed)
    with _bar(progress, n_var, "factor_vae: variances", "img") as bar:
        codes, _ = _sample_codes(represent, data, n_var, g, image_g, batch_size, bar)
    global_var = codes.var(0, ddof=1)  # (D,)
    active = np.sqrt(global_var) >= threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    with _bar(progress, n_train + n_eval, "factor_vae: votes", "vote") as bar:
        train = _factor_vae_votes(represent, data, n_train, batch, g, image_g, global_var, active, batch_size, bar)
        classifier = train.argmax(0)  # (active dims,) the factor each dimension predicts
        columns = np.arange(train.shape[1])
        evaluation = _factor_vae_votes(represent, data, n_eval, batch, g, image_g, global_var, active, batch_size,
                                       bar)
    return {"train_accuracy": float(train[classifier, columns].sum() / train.sum()),
            "eval_accuracy": float(evaluation[classifier, columns].sum() / evaluation.sum()),
            "num_active_dims": int(active.sum())}


# ---- DCI ---------------------------------------------------------------------------------------------------------

def _normalised_entropy(p, base):
    """Entropy of each column of p (rows summed to 1 after +1e-11, as scipy.stats.entropy), in log base `base`."""
    p = p + 1e-11
    p = p / p.sum(0, keepdims=True)
    return -(p * np.log(p)).sum(0) / math.log(base)


def dci_scores(importance):
    """Eastwood & Williams 2018, sec. 2 (disentanglement_lib dci.py): from the importance matrix R (D codes, K
    factors), disentanglement sum_i rho_i (1 - H_K(P_i.)) with rho_i code i's share of the importance, and
    completeness sum_k rho_k (1 - H_D(P_.k)) with rho_k factor k's share. Returns (disentanglement, completeness)."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    weights = r if r.sum() > 0 else np.ones_like(r)
    per_code = 1 - _normalised_entropy(r.T, r.shape[1])  # (D,)
    per_factor = 1 - _normalised_entropy(r, r.shape[0])  # (K,)
    return (float((per_code * weights.sum(1) / weights.sum()).sum()),
            float((per_factor * weights.sum(0) / weights.sum()).sum()))


def dci_codes(train_codes, train_factors, test_codes, test_factors, n_estimators=100, seed=0, bar=None):
    """DCI of given codes (N, D) and factor classes (N, K): one GradientBoostingClassifier per factor (sklearn's
    defaults but `n_estimators`), its feature importances as R's column, informativeness its accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier  # lazy: vae-train never pays for sklearn

    x_train, x_test = _numpy(train_codes), _numpy(test_codes)
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    importance = np.zeros((x_train.shape[1], y_train.shape[1]))
    train_acc, test_acc = [], []
    for k in range(y_train.shape[1]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed).fit(x_train, y_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(x_train) == y_train[:, k]))
        test_acc.append(np.mean(model.predict(x_test) == y_test[:, k]))
        if bar is not None:
            bar.update(1)
    disentanglement, completeness = dci_scores(importance)
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness_train": float(np.mean(train_acc)), "informativeness_test": float(np.mean(test_acc)),
            "importance": importance.tolist()}


def dci(represent, data, n_train=10_000, n_test=5_000, n_estimators=100, seed=0, batch_size=2048, progress=False):
    """Eastwood & Williams 2018 as disentanglement_lib computes it (evaluation/metrics/dci.py): gradient-boosted
    trees on n_train random points, accuracy also on n_test. Returns {"disentanglement", "completeness",
    "informativeness_train", "informativeness_test", "importance" (D x K)}."""
    _check(data)
    train, test = _train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "dci")
    with _bar(progress, len(data.factor_sizes), "dci: fit", "fit") as bar:
        return dci_codes(*train, *test, n_estimators=n_estimators, seed=seed, bar=bar)


# ---- SAP ---------------------------------------------------------------------------------------------------------

def sap_codes(train_codes, train_factors, test_codes, test_factors, names=None, seed=0, bar=None):
    """SAP of given codes for discrete factors: the score matrix S (D, K) holds the test accuracy of
    LinearSVC(C=0.01, class_weight="balanced") fit on code dimension i alone to predict factor k; the score is the
    mean over factors of the gap between the two largest entries of S's column. Not invariant to a code's scale:
    C regularises the weight and the intercept, so a dimension multiplied by 10 can score differently."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: vae-train never pays for sklearn
    from sklearn.svm import LinearSVC

    x_train, x_test = _numpy(train_codes), _numpy(test_codes)
    y_train, y_test = np.asarray(train_factors), np.asarray(test_factors)
    names = list(names or [f"factor{k}" for k in range(y_train.shape[1])])
    scores = np.zeros((x_train.shape[1], y_train.shape[1]))
    unconverged = 0
    for i in range(x_train.shape[1]):
        for k in range(y_train.shape[1]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                # The primal solver: the same optimum as the dual one disentanglement_lib's scikit-learn defaulted to
                # (identical accuracies where that converges), reached where it does not (a code with a wide range)
                model = LinearSVC(C=0.01, class_weight="balanced", dual=False, random_state=seed)
                model.fit(x_train[:, i : i + 1], y_train[:, k])
            unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            scores[i, k] = np.mean(model.predict(x_test[:, i : i + 1]) == y_test[:, k])
            if bar is not None:
                bar.update(1)
    top = np.sort(scores, axis=0)[::-1]  # (D, K), descending in each column
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return {"score": float(gaps.mean()), "per_factor": dict(zip(names, gaps.tolist())),
            "score_matrix": scores.tolist(), "unconverged_fits": int(unconverged)}


def sap(represent, data, n_train=10_000, n_test=5_000, seed=0, batch_size=2048, progress=False):
    """Kumar et al. 2018, sec. 3, as disentanglement_lib computes it for discrete factors (evaluation/metrics/
    sap_score.py, continuous_factors=False). Returns {"score", "per_factor", "score_matrix" (D x K),
    "unconverged_fits"}."""
    _check(data)
    train, test = _train_test_codes(represent, data, n_train, n_test, seed, batch_size, progress, "sap")
    with _bar(progress, train[0].shape[1] * len(data.factor_sizes), "sap: fit", "fit") as bar:
        return sap_codes(*train, *test, names=data.factor_names, seed=seed, bar=bar)


# ---- beta-VAE score ----------------------------------------------------------------------------------------------

def _beta_vae_points(represent, data, n_points, batch, g, image_g, batch_size, bar):
    """n_points (features |z1 - z2| averaged over `batch` pairs sharing one factor k, label k)."""
    features, labels = [], []
    per_call = max(1, batch_size // (2 * batch))
    for start in range(0, n_points, per_call):
        m = min(per_call, n_points - start)
        k = torch.randint(len(data.factor_sizes), (m,), generator=g)
        first = data.sample_factors(m * batch, g).view(m, batch, -1)
        second = data.sample_factors(m * batch, g).view(m, batch, -1)
        rows = torch.arange(m)
        second[rows, :, k] = first[rows, :, k]  # each pair shares factor k
        both = torch.cat([first, second]).view(2 * m * batch, -1)
        codes = _represent(represent, data, both, image_g, 2 * m * batch).reshape(2, m, batch, -1)
        features.append(np.abs(codes[0] - codes[1]).mean(1))  # (m, D)
        labels.append(k.numpy())
        bar.update(m)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(represent, data, n_train=10_000, n_eval=5_000, batch=64, seed=0, batch_size=2048,
                   progress=False):
    """Higgins et al. 2017, sec. 3, as disentanglement_lib computes it (evaluation/metrics/beta_vae.py): a point is
    |z1 - z2| of posterior means averaged over `batch` pairs of images that share one factor k, its label k; a
    LogisticRegression (sklearn's defaults) fit on n_train points, accuracy there and on n_eval new ones.
    Returns {"train_accuracy", "eval_accuracy", "unconverged_fits"}."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: vae-train never pays for sklearn
    from sklearn.linear_model import LogisticRegression

    _check(data)
    g, image_g = _generators(data, seed)
    with _bar(progress, n_train + n_eval + 1, "beta_vae", "point") as bar:
        x_train, y_train = _beta_vae_points(represent, data, n_train, batch, g, image_g, batch_size, bar)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(random_state=seed).fit(x_train, y_train)
        bar.update(1)
        x_eval, y_eval = _beta_vae_points(represent, data, n_eval, batch, g, image_g, batch_size, bar)
    return {"train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
            "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
            "unconverged_fits": int(any(issubclass(w.category, ConvergenceWarning) for w in caught))}


# ---- all of them -------------------------------------------------------------------------------------------------

METRICS = {"mig_dlib": mig_dlib, "mig_chen": mig_chen, "factor_vae": factor_vae_score, "dci": dci, "sap": sap,
           "beta_vae": beta_vae_score}


def disentanglement(encode, data, metrics=tuple(METRICS), sizes="quick", seed=0, batch_size=2048, progress=True):
    """Run the `metrics` (names of METRICS) with `sizes`: "quick", "full" or a {metric: {size: value}} mapping over
    FULL. `encode` maps images (n, C, H, W) to (mean, log_var), each (n, D); Chen's MIG samples from them, the others
    use the means. Progress bars with time left go to stderr.

    Returns {metric: its result dict, "protocol": {metric: the sizes used}, "seconds": {metric: wall time},
    "sklearn_version": ..., "seed": seed}.
    """
    _check(data)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown disentanglement metrics {unknown}; choose from {list(METRICS)}")
    if isinstance(sizes, str):
        if sizes not in PRESETS:
            raise ValueError(f"sizes must be one of {list(PRESETS)} or a mapping, got {sizes!r}")
        sizes = PRESETS[sizes]
    import sklearn  # lazy, as in the metrics; its version changes these figures (solver defaults)

    def represent(images):
        return encode(images)[0]  # the posterior means

    out, protocol, seconds = {}, {}, {}
    for name in metrics:
        protocol[name] = {**FULL[name], **dict(sizes.get(name, {}))}
        start = time.perf_counter()
        out[name] = METRICS[name](encode if name == "mig_chen" else represent, data, seed=seed,
                                  batch_size=batch_size, progress=progress, **protocol[name])
        seconds[name] = round(time.perf_counter() - start, 2)
    if "mig_chen" in protocol and protocol["mig_chen"]["n_images"] is None:
        protocol["mig_chen"]["n_images"] = math.prod(data.factor_sizes)
    return {**out, "protocol": protocol, "seconds": seconds, "sklearn_version": sklearn.__version__, "seed": seed}
