"""InfoMEC (Hsu et al. 2023, "Disentanglement via Latent Quantization", sec. 5) as kylehkhsu/latent_quantization
computes it (disentangle/metrics/infomec.py), for continuous codes and discrete factors.

NMI_kj = I(v_k; z_j) / H(v_k) for each factor v_k and code dimension z_j. InfoM (modularity): for each active
dimension, the share of its NMI that goes to its best factor, averaged, rescaled so that 1/K (spread evenly) is 0;
InfoC (compactness): for each factor, the share of its NMI held by its best active dimension, averaged, rescaled so
that 1/D_active is 0; InfoE (explicitness): the information about each factor a multinomial logistic regression on
the whole code reads out, (H(v_k) - CE) / H(v_k) with CE its cross-entropy and H(v_k) that of the same regression
on a constant input, averaged over factors.
"""
import numpy as np

from vae_lab.measure.disentanglement.base import Metric, as_numpy, check_factors, generators, sample_codes
from vae_lab.measure.disentanglement.mig_dlib import entropy
from vae_lab.progress import bar as progress_bar

NEIGHBOURS = 10  # the reference's n_neighbors for mutual_info_classif
ACTIVE = 1 / 20  # a dimension is active when its range exceeds this share of the widest range (the reference's)


def classes(factors):
    """(N, K) values -> (N, K) classes 0..n_k - 1 of each column (the reference's LabelEncoder)."""
    factors = np.asarray(factors)
    return np.stack([np.unique(column, return_inverse=True)[1] for column in factors.T], 1)


def normalised_mi(codes, factors, seed=0):
    """NMI (K, D): I(v_k; z_j) / H(v_k), the MI of each standardised continuous dimension with each discrete factor
    estimated by scikit-learn's mutual_info_classif (Ross 2014's nearest-neighbour estimator, 10 neighbours), its
    random jitter seeded with `seed` (the reference leaves it unseeded); H(v_k) of the factor's histogram, in nats."""
    from sklearn.feature_selection import mutual_info_classif  # lazy: vae-train never pays for sklearn

    codes, factors = as_numpy(codes), classes(factors)
    std = codes.std(0)
    codes = (codes - codes.mean(0)) / np.where(std > 0, std, 1)
    out = np.zeros((factors.shape[1], codes.shape[1]))
    for k, v in enumerate(factors.T):
        h = entropy(v)
        if h <= 0:
            continue  # a factor constant in the sample: no information to share
        out[k] = mutual_info_classif(codes, v, discrete_features=False, n_neighbors=NEIGHBOURS,
                                     random_state=seed) / h
    return out


def _rescaled(shares, chance):
    """(mean share - chance) / (1 - chance): 0 at an even spread, 1 when each row's NMI sits in one entry; 1 where
    there is one entry to choose (chance 1), 0 where there is none."""
    if shares.size == 0:
        return 0.0
    return 1.0 if chance >= 1 else float((shares.mean() - chance) / (1 - chance))


def predictive_information(codes, factors):
    """InfoE's per-factor (H - CE) / H: unpenalised multinomial logistic regression (lbfgs, tolerance 1e-4, at most
    100 iterations, class_weight="balanced"), its cross-entropy on the points it was fitted to, as the reference.
    The reference passes multi_class="multinomial", an option scikit-learn 1.8 removed: lbfgs fits the multinomial
    model for three or more classes by default, and for two classes its one logistic function gives the same
    probabilities as the two-class softmax when unpenalised, so leaving the option out fits the same model. Its
    penalty=None is C=inf here (scikit-learn 1.8 deprecated `penalty`; C=inf is the same unpenalised objective)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    codes, factors = as_numpy(codes), classes(factors)
    std = codes.std(0)
    codes = (codes - codes.mean(0)) / np.where(std > 0, std, 1)

    def cross_entropy(x, y):
        model = LogisticRegression(C=np.inf, tol=1e-4, class_weight="balanced", solver="lbfgs", max_iter=100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the reference's 100 iterations, as it fits them
            model.fit(x, y)
        return log_loss(y, model.predict_proba(x), labels=model.classes_)

    out = []
    for v in factors.T:
        if len(np.unique(v)) < 2:
            continue
        marginal = cross_entropy(np.zeros_like(codes), v)
        out.append((marginal - cross_entropy(codes, v)) / marginal)
    return out


def infomec_codes(codes, factors, seed=0):
    """InfoM, InfoE, InfoC of codes (N, D) and factor classes (N, K). Returns {"infom", "infoe", "infoc", "nmi"
    (K x D), "active_dims" (D booleans), "infoe_per_factor"}."""
    codes = as_numpy(codes)
    nmi = normalised_mi(codes, factors, seed)
    ranges = codes.max(0) - codes.min(0)
    active = ranges > ranges.max() * ACTIVE if ranges.max() > 0 else np.zeros(len(ranges), bool)
    pruned = nmi[:, active]  # (K, D_active)
    k, d = pruned.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        per_dim = np.nan_to_num(pruned.max(0, initial=0) / pruned.sum(0))  # (D_active,): best factor's share
        per_factor = np.nan_to_num(pruned.max(1, initial=0) / pruned.sum(1))  # (K,): best dimension's share
    infoe = predictive_information(codes, factors)
    return {"infom": _rescaled(per_dim, 1 / k) if d else 0.0, "infoc": _rescaled(per_factor, 1 / d) if d else 0.0,
            "infoe": float(np.mean(infoe)) if infoe else 0.0, "nmi": nmi.tolist(), "active_dims": active.tolist(),
            "infoe_per_factor": [float(v) for v in infoe]}


def infomec(represent, data, n=10_000, seed=0, batch_size=2048, progress=False):
    """InfoMEC (Hsu et al. 2023) of the codes of n images with factors drawn uniformly over the grid (the
    reference scores 10,000 validation images). Returns infomec_codes' dict."""
    check_factors(data)
    with progress_bar(n, "infomec: encode", "img", enabled=progress, unit_scale=True) as bar:
        codes, factors = sample_codes(represent, data, n, *generators(data, seed), batch_size, bar)
    return infomec_codes(codes, factors, seed)


METRIC = Metric(
    "infomec", infomec,
    full={"n": 10_000},  # latent_quantization configs/train_ae.yaml: num_val_data
    quick={"n": 2_000},
    headline=("infom", "infoe", "infoc"),
    prefixed=False,
)
