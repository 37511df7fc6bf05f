"""Known answers of each disentanglement metric, under its own convention, and the datasets' factor interface.

Most cases use FactorImages, whose "images" are the factor classes themselves, so a code is any function of them:
the identity, a permuted and rescaled copy, noise independent of the factors, a rotation that mixes two factors, a
duplicated dimension and collapsed (constant) dimensions.
"""
import inspect
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from vae_lab.data.base import ImageData, unravel_index
from vae_lab.data.sprites import FACTOR_SIZES, Sprites
from vae_lab.measure import disentanglement as dis
from vae_lab.measure.disentanglement.base import sampled
from vae_lab.measure.disentanglement.beta_vae import beta_vae_score
from vae_lab.measure.disentanglement.dci import dci, dci_scores
from vae_lab.measure.disentanglement.factor_vae import factor_vae_score
from vae_lab.measure.disentanglement.mig_chen import mig_chen
from vae_lab.measure.disentanglement.mig_dlib import BINS, discrete_mi, discretise, entropy, mig_dlib, mig_dlib_codes
from vae_lab.measure.disentanglement.sap import sap
from vae_lab.results import REPRESENTATIONS

SIZES = (3, 6, 10, 8, 8)  # pos-like factors 3 and 4 share a size, so a rotation of them is symmetric
K = len(SIZES)


class FactorImages(ImageData):
    """A dataset whose image (1, 1, K) of factor classes v is v itself."""

    def __init__(self, sizes=SIZES, names=None):
        super().__init__()
        self.factor_sizes = tuple(sizes)
        self.factor_names = tuple(names or (f"f{k}" for k in range(len(sizes))))
        self.shape = (1, 1, len(sizes))

    def images_for_factors(self, factors, generator=None):
        return torch.as_tensor(factors).float().view(len(factors), 1, 1, -1)


def code(transform):
    """A representation: images -> transform(factors)."""
    return lambda images: transform(images.flatten(1))


def identity(v):
    return v


def permuted_rescaled(v):
    return (v * torch.tensor([2.0, -0.5, 3.0, 0.7, 1.5]) + 4)[:, [2, 4, 0, 1, 3]]


def noise(v):  # a code independent of the factors
    return torch.randn(v.shape, generator=torch.Generator().manual_seed(len(v)))


def rotated(v):  # factors 3 and 4 mixed by a 45-degree rotation (up to scale)
    return torch.cat([v[:, :3], v[:, 3:4] + v[:, 4:5], v[:, 3:4] - v[:, 4:5]], 1)


def duplicated(v):  # factor 2 in two dimensions
    return torch.cat([v, v[:, 2:3]], 1)


def collapsed(v):  # two constant dimensions added
    return torch.cat([v, torch.zeros(len(v), 2)], 1)


def grid(sizes):
    """Every factor combination (prod(sizes), K): on it any two distinct factors are exactly independent."""
    return unravel_index(torch.arange(math.prod(sizes)), sizes)


# ---- the dataset interface ---------------------------------------------------------------------------------------

def test_sprites_images_for_factors_are_the_batch_images():
    d = Sprites(val_size=100, test_size=100)
    index = torch.arange(0, 3000, 7)
    factors = d.factors("train", index)
    assert d.factor_sizes == FACTOR_SIZES
    assert torch.equal(d.images_for_factors(factors), d.batch("train", index))
    one = torch.tensor([[2, 3, 7, 4, 9]])
    d._index["test"][0] = (((2 * 6 + 3) * 40 + 7) * 32 + 4) * 32 + 9  # the same grid point, planted in a split
    assert torch.equal(d.images_for_factors(one), d.batch("test", torch.tensor([0])))
    with pytest.raises(ValueError):
        d.images_for_factors(torch.tensor([[3, 0, 0, 0, 0]]))  # shape has 3 values


def test_sample_factors_are_uniform_over_the_grid():
    d = Sprites(val_size=10, test_size=10)
    n = 64_000
    f = d.sample_factors(n, torch.Generator().manual_seed(0))
    assert f.shape == (n, 5) and f.dtype == torch.long
    for k, size in enumerate(FACTOR_SIZES):
        counts = torch.bincount(f[:, k], minlength=size).double()
        assert counts.numel() == size
        expected = n / size
        assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()  # 5 binomial standard deviations
    assert ImageData().sample_factors(3).shape == (3, 0)


# ---- MIG, disentanglement_lib ------------------------------------------------------------------------------------

def binned_entropy_ratio(n, bins=BINS):
    """H(bin(v)) / H(v) for v uniform on 0..n-1 in `bins` equal-width bins from 0 to n-1, in exact integers: bin
    b holds v when b <= v * bins / (n - 1) < b + 1, the last bin also holding v = n - 1."""
    counts = Counter(min(v * bins // (n - 1), bins - 1) for v in range(n)).values()
    return -sum(c / n * math.log(c / n) for c in counts) / math.log(n)


def test_binned_entropy_ratio_by_hand():
    # 32 positions in 20 bins of width 1.55: 12 bins hold two values and 8 one, so H = (3/4) log 16 + (1/4) log 32
    assert binned_entropy_ratio(32) == pytest.approx(0.75 * 0.8 + 0.25)
    assert binned_entropy_ratio(6) == pytest.approx(1.0)  # at most 20 values: each keeps its own bin


def test_mig_dlib_of_the_identity_code_on_the_full_grid():
    """On the whole grid other dimensions carry exactly no information, so factor k's gap is the binned entropy
    ratio: 1 for 3 and 6 values, 0.85 for 32, 0.812 for 40; dSprites' five factors give 0.9024, not 1."""
    sizes = (3, 6, 40, 32)
    f = grid(sizes)
    score, gaps = mig_dlib_codes(f, f)
    expected = [binned_entropy_ratio(n) for n in sizes]
    assert list(gaps.values()) == pytest.approx(expected, abs=1e-12)
    sprites = [binned_entropy_ratio(n) for n in FACTOR_SIZES]
    assert sum(sprites) / 5 == pytest.approx(0.9024196, abs=1e-7)


def test_mig_dlib_known_cases_on_the_full_grid():
    f = grid(SIZES)
    base, gaps = mig_dlib_codes(f, f)
    assert base == pytest.approx(sum(binned_entropy_ratio(n) for n in SIZES) / K, abs=1e-12)
    # equal-width bins between min and max: any affine map with a non-zero slope and any order give the same bins
    assert mig_dlib_codes(permuted_rescaled(f.double()), f)[0] == pytest.approx(base, abs=1e-12)
    assert mig_dlib_codes(collapsed(f.double()), f)[0] == pytest.approx(base, abs=1e-12)  # one bin: no MI
    dup = mig_dlib_codes(duplicated(f.double()), f)[1]
    assert dup["factor2"] == 0.0 and dup["factor0"] == pytest.approx(gaps["factor0"])  # two equal top MIs
    # x + y and x - y carry the same information about x (and y): the gap of both is exactly 0
    rot = mig_dlib_codes(rotated(f.double()), f)[1]
    assert rot["factor3"] == pytest.approx(0.0, abs=1e-12) and rot["factor4"] == pytest.approx(0.0, abs=1e-12)
    assert mig_dlib_codes(noise(f.double()), f)[0] < 0.01


def test_mig_dlib_bins_are_numpys_histogram_bins():
    x = np.array([0.0, 0.05, 0.1, 0.5, 0.95, 1.0])
    assert discretise(x[:, None], bins=10)[:, 0].tolist() == [0, 0, 1, 5, 9, 9]  # the maximum in the last bin
    assert len(set(discretise(np.full((4, 1), 3.0))[:, 0].tolist())) == 1  # a constant: one bin (its middle)


def test_discrete_mi_and_entropy():
    a = np.arange(1000) % 4
    assert entropy(a) == pytest.approx(math.log(4))
    assert discrete_mi(a, a) == pytest.approx(math.log(4))
    assert discrete_mi(a, a * 7 + 1) == pytest.approx(math.log(4))  # labels do not matter
    assert discrete_mi(a, (np.arange(1000) // 4) % 5) == pytest.approx(0.0, abs=1e-12)  # independent by design


def test_mig_dlib_from_images_and_the_name_measure_uses():
    data = FactorImages()
    out = mig_dlib(code(identity), data, n=4000)
    exact = sum(binned_entropy_ratio(n) for n in SIZES) / K
    assert set(out["per_factor"]) == set(data.factor_names)
    assert exact - 0.01 < out["score"] <= exact + 1e-9  # a finite sample gives other dimensions a little MI
    from vae_lab.measure import elbo  # measure()'s MIG on the split's means is this one

    assert elbo.mig_dlib_codes is mig_dlib_codes


# ---- MIG, Chen et al. --------------------------------------------------------------------------------------------

CHEN_SIZES, CHEN_NAMES = (3, 4, 5, 6), ("shape", "a", "b", "c")


def gaussian_code(transform, sigma=0.01):
    """encode: images -> (transform(v), log sigma^2): posteriors far narrower than the spacing of the values."""
    return lambda images: (transform(images.flatten(1)), torch.full_like(transform(images.flatten(1)),
                                                                         2 * math.log(sigma)))


def test_mig_chen_known_cases_on_the_full_grid():
    """With every image and every sample: I(z_k; v_k) = log |v_k| and I(z_j; v_k) = 0 for j != k exactly (the
    sample terms cancel), so the identity code scores 1; shape is left out as in Chen et al.'s dSprites."""
    data = FactorImages(CHEN_SIZES, CHEN_NAMES)
    out = mig_chen(gaussian_code(identity), data)
    assert out["whole_grid"] and out["n_images"] == out["n_samples"] == 360
    assert set(out["per_factor"]) == {"a", "b", "c"}
    assert out["score"] == pytest.approx(1.0, abs=1e-5)
    assert out["mutual_info"]["b"] == pytest.approx([0, 0, math.log(5), 0], abs=1e-5)
    scaled = mig_chen(gaussian_code(lambda v: (3 * v - 1)[:, [3, 0, 2, 1]], sigma=0.03), data)
    assert scaled["score"] == pytest.approx(1.0, abs=1e-5)  # mean and sigma scaled together, dimensions permuted

    def with_prior_dims(images):  # two collapsed dimensions: q(z|x) = N(0, 1) for every image
        mean, log_var = gaussian_code(identity)(images)
        return torch.cat([mean, torch.zeros(len(mean), 2)], 1), torch.cat([log_var, torch.zeros(len(mean), 2)], 1)

    dead = mig_chen(with_prior_dims, data)
    assert dead["score"] == pytest.approx(1.0, abs=1e-5)
    assert dead["mutual_info"]["c"][4:] == pytest.approx([0, 0], abs=1e-5)
    dup = mig_chen(gaussian_code(lambda v: torch.cat([v, v[:, 2:3]], 1)), data)["per_factor"]
    assert dup["b"] == pytest.approx(0.0, abs=1e-5) and dup["a"] == pytest.approx(1.0, abs=1e-5)
    mixed = mig_chen(gaussian_code(lambda v: torch.cat([v[:, :2], v[:, 2:3] + v[:, 3:4], v[:, 2:3] - v[:, 3:4]],
                                                       1)), data)["per_factor"]
    assert mixed["b"] < 0.5 and mixed["a"] == pytest.approx(1.0, abs=1e-5)  # b and c shared by two dimensions
    independent = mig_chen(gaussian_code(noise, sigma=1.0), data)
    assert independent["score"] < 0.05


def test_mig_chen_on_a_subsample_says_so():
    data = FactorImages((3, 6, 40, 32), ("shape", "scale", "orientation", "pos_x"))
    out = mig_chen(gaussian_code(identity), data, n_images=3000, n_samples=1000)
    assert not out["whole_grid"] and out["n_images"] == 3000 and out["n_samples"] == 1000
    assert 0.95 < out["score"] <= 1.0  # I(z_k; v_k) is the sample's entropy of v_k, a little below log |v_k|


# ---- FactorVAE score ---------------------------------------------------------------------------------------------

FACTOR_VAE = {"n_var": 2000, "n_train": 300, "n_eval": 200}


def test_factor_vae_known_cases():
    """A fixed factor's own dimension has zero variance in its batch, so the identity code and any permuted,
    rescaled, duplicated or padded copy votes without error: accuracy 1 exactly."""
    data = FactorImages()
    for transform in (identity, permuted_rescaled, duplicated, collapsed):
        out = factor_vae_score(code(transform), data, **FACTOR_VAE)
        assert out["train_accuracy"] == out["eval_accuracy"] == 1.0, transform.__name__
    assert factor_vae_score(code(collapsed), data, **FACTOR_VAE)["num_active_dims"] == K  # std 0: pruned
    tiny = factor_vae_score(code(lambda v: torch.cat([v, 0.001 * v[:, :1]], 1)), data, **FACTOR_VAE)
    assert tiny["num_active_dims"] == K  # std below 0.05: pruned
    # fixing x or y halves the variance of both x + y and x - y alike: both factors vote for the same dimension,
    # the majority classifier gets one of them right, (K - 1) / K
    assert factor_vae_score(code(rotated), data, **FACTOR_VAE)["eval_accuracy"] == pytest.approx(0.8, abs=0.07)
    assert factor_vae_score(code(noise), data, **FACTOR_VAE)["eval_accuracy"] == pytest.approx(1 / K, abs=0.08)
    none = factor_vae_score(code(lambda v: 0 * v), data, **FACTOR_VAE)
    assert none == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


# ---- DCI ---------------------------------------------------------------------------------------------------------

def test_dci_scores_of_given_importance_matrices():
    assert dci_scores(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert dci_scores(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-9)
    # code 0 split evenly over factors 0 and 1 (weight 2 of 3), code 1 all on factor 1: D = 2/3 * 0 + 1/3 * 1
    r = np.array([[1.0, 1.0], [0.0, 1.0]])
    d, c = dci_scores(r)
    assert d == pytest.approx(1 / 3, abs=1e-9)
    # factor 0 all on code 0 (weight 1/3), factor 1 split evenly over both codes (weight 2/3)
    assert c == pytest.approx(1 / 3, abs=1e-9)


DCI = {"n_train": 1000, "n_test": 500, "n_estimators": 20}


def test_dci_known_cases():
    data = FactorImages()
    base = dci(code(identity), data, **DCI)
    assert base["disentanglement"] > 0.999 and base["completeness"] > 0.999
    assert base["informativeness_train"] == base["informativeness_test"] == 1.0
    same = dci(code(permuted_rescaled), data, **DCI)  # trees see only the order of each dimension's values
    assert same["disentanglement"] == pytest.approx(base["disentanglement"], abs=1e-3)
    assert same["completeness"] == pytest.approx(base["completeness"], abs=1e-3)
    dead = dci(code(collapsed), data, **DCI)
    assert dead["disentanglement"] > 0.999 and dead["completeness"] > 0.999
    assert np.array(dead["importance"])[K:].sum() == 0.0  # never split on
    # duplicated factor 2: its importance splits about evenly over two dimensions, completeness falls to
    # 1 - (1/K) log 2 / log(K + 1); disentanglement stays 1
    dup = dci(code(duplicated), data, **DCI)
    assert dup["completeness"] == pytest.approx(1 - math.log(2) / (K * math.log(K + 1)), abs=0.02)
    assert dup["disentanglement"] > 0.999
    # rotated factors 3 and 4: each of their 2 (of K) dimensions is split evenly over both, D = 1 - (2/K) log 2 / log K
    rot = dci(code(rotated), data, **DCI)
    assert rot["disentanglement"] == pytest.approx(1 - 2 / K * math.log(2) / math.log(K), abs=0.02)
    independent = dci(code(noise), data, **DCI)
    assert independent["disentanglement"] < 0.1 and independent["completeness"] < 0.1
    assert independent["informativeness_test"] < 0.3  # chance is 1/|v_k|, 0.2 on average here


# ---- SAP ---------------------------------------------------------------------------------------------------------

SAP = {"n_train": 1000, "n_test": 500}


def test_sap_known_cases():
    """A linear SVM on one dimension cannot pick out a middle value, so even the identity code scores far below 1;
    permuting dimensions changes nothing, a duplicated dimension gives its factor a gap of exactly 0."""
    data = FactorImages()
    base = sap(code(identity), data, **SAP)
    assert 0.1 < base["score"] < 0.6
    assert base["per_factor"]["f0"] > base["per_factor"]["f2"]  # 3 values are easier than 10
    shuffle = [2, 4, 0, 1, 3]
    permuted = sap(code(lambda v: v[:, shuffle]), data, **SAP)
    assert permuted["score"] == base["score"]
    assert np.array_equal(np.array(permuted["score_matrix"]), np.array(base["score_matrix"])[shuffle])
    assert sap(code(duplicated), data, **SAP)["per_factor"]["f2"] == 0.0
    assert sap(code(collapsed), data, **SAP)["score"] == pytest.approx(base["score"], abs=0.01)
    assert sap(code(noise), data, **SAP)["score"] < 0.05
    # C = 0.01 regularises the weight and the intercept, so the scale of a dimension matters
    assert sap(code(lambda v: 0.1 * v), data, **SAP)["score"] < base["score"] - 0.05


# ---- beta-VAE score ----------------------------------------------------------------------------------------------

BETA_VAE = {"n_train": 200, "n_eval": 200}


def test_beta_vae_known_cases():
    """The fixed factor's own dimension has |z1 - z2| = 0 and every other one does not: separable, accuracy 1."""
    data = FactorImages()
    for transform in (identity, permuted_rescaled, collapsed):
        out = beta_vae_score(code(transform), data, **BETA_VAE)
        assert out["train_accuracy"] == out["eval_accuracy"] == 1.0, transform.__name__
    # fixing x or y gives x + y and x - y the same differences |dy| or |dx|, equal in law: the classifier cannot
    # tell the two factors apart, (K - 1) / K
    assert beta_vae_score(code(rotated), data, **BETA_VAE)["eval_accuracy"] == pytest.approx(0.8, abs=0.08)
    assert beta_vae_score(code(noise), data, **BETA_VAE)["eval_accuracy"] == pytest.approx(1 / K, abs=0.1)


# ---- all of them -------------------------------------------------------------------------------------------------

TINY = {"mig_dlib": {"n": 500}, "mig_chen": {"n_images": 300, "n_samples": 200},
        "factor_vae": {"n_var": 500, "n_train": 50, "n_eval": 50}, "dci": {"n_train": 300, "n_test": 100,
                                                                          "n_estimators": 5},
        "sap": {"n_train": 300, "n_test": 100}, "beta_vae": {"n_train": 50, "n_eval": 50},
        "infomec": {"n": 300}, "unsupervised": {"n": 500}}
TINY["dci"]["max_features"] = 16
ONE_RUN = [name for name, m in dis.METRICS.items() if not m.needs_runs]  # UDR scores a set of runs


def test_disentanglement_runs_every_metric_and_records_its_protocol():
    import sklearn

    data = FactorImages()
    out = dis.disentanglement(gaussian_code(identity), data, metrics=tuple(TINY), sizes=TINY, seed=3, progress=False)
    assert set(out) == {*TINY, "protocol", "seconds", "sklearn_version", "seed", "representation"}
    assert out["sklearn_version"] == sklearn.__version__ and out["seed"] == 3
    assert out["protocol"]["factor_vae"] == {**TINY["factor_vae"], "batch": 64}
    assert out["protocol"]["mig_chen"] == TINY["mig_chen"] and out["mig_chen"]["n_images"] == 300
    assert out["factor_vae"]["eval_accuracy"] == 1.0 and out["beta_vae"]["eval_accuracy"] == 1.0
    again = dis.disentanglement(gaussian_code(identity), data, metrics=("mig_dlib", "sap"), sizes=TINY, seed=3,
                                progress=False)
    assert again["mig_dlib"] == out["mig_dlib"] and again["sap"] == out["sap"]  # seeded per metric


def test_presets_and_errors():
    assert all(set(m.full) == set(m.quick) for m in dis.METRICS.values())
    assert dis.METRICS["factor_vae"].full == {"n_var": 10_000, "n_train": 10_000, "n_eval": 5_000, "batch": 64}
    with pytest.raises(ValueError, match="unknown"):
        dis.disentanglement(gaussian_code(identity), FactorImages(), metrics=("mig",))
    with pytest.raises(ValueError, match="sizes"):
        dis.disentanglement(gaussian_code(identity), FactorImages(), sizes="medium")
    with pytest.raises(ValueError, match="no ground-truth factors"):
        mig_dlib(code(identity), ImageData())


def test_every_record_fits_its_function_and_its_result():
    """A record's sizes are keyword arguments of its function, the full ones its defaults; its headline parts are
    keys of its result, and headline_results names them as eval.json does."""
    for name, metric in dis.METRICS.items():
        parameters = inspect.signature(metric.compute).parameters
        assert metric.name == name
        assert set(metric.quick) <= set(parameters) and set(metric.full) <= set(parameters), name
        assert metric.full == {k: parameters[k].default for k in metric.full}, name

    modes = []

    class Model(torch.nn.Module):
        def encoder(self, images):
            modes.append(self.training)
            return gaussian_code(identity)(images)

    model = Model().train()
    names = list(TINY)  # the others': test_metrics_dlib, test_metrics_new
    out = dis.headline_results(model, FactorImages(), names, TINY, seed=0)
    assert modes and not any(modes) and model.training  # encoded in evaluation mode, then back
    keys = dis.headline_keys(names)
    assert keys[:8] == ["mig_dlib", "mig_chen", "factor_vae", "dci_disentanglement", "dci_completeness",
                        "dci_informativeness_test", "dci_explicitness", "dci_size"]  # the β story's first
    assert list(out) == [*keys, "disentanglement"]
    for name in names:
        metric = dis.METRICS[name]
        assert set(metric.headline) <= set(out["disentanglement"][name]), name
        assert all(isinstance(out[key], float) for key in metric.headlines()), name



def test_sampled_representation_is_one_draw_of_the_posterior_per_call():
    """base.sampled: mean + sigma * noise, fresh noise at each call, the same draws for the same seed."""
    images = torch.zeros(20_000, 1, 1, 2)
    encode = gaussian_code(lambda v: v + torch.tensor([1.0, -2.0]), sigma=0.5)
    first = sampled(encode, seed=3)
    a, b = first(images), first(images)
    assert not torch.equal(a, b) and torch.equal(a, sampled(encode, seed=3)(images))
    torch.testing.assert_close(a.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(a.std(0), torch.tensor([0.5, 0.5]), atol=0.02, rtol=0)


def test_sampled_codes_score_as_their_noise_allows():
    """Posteriors far narrower than the values' spacing: the sampled code scores as the means do; posteriors as wide
    as the spacing: its MIG falls, the means' does not."""
    data = FactorImages()
    for sigma, same in ((0.01, True), (1.0, False)):
        encode = gaussian_code(identity, sigma)
        mean, draw = (dis.disentanglement(encode, data, ["mig_dlib"], TINY, progress=False, representation=r)
                      for r in REPRESENTATIONS)
        assert draw["representation"] == "sampled" and mean["representation"] == "mean"
        if same:
            assert draw["mig_dlib"]["score"] == pytest.approx(mean["mig_dlib"]["score"], abs=0.02)
        else:
            assert draw["mig_dlib"]["score"] < mean["mig_dlib"]["score"] - 0.2, (sigma, draw, mean)


def test_headlines_on_both_representations():
    """representations mean and sampled: every headline twice, the second with _sampled, except Chen's MIG, which
    samples its own codes and runs once, under its own name."""
    class Model(torch.nn.Module):
        def encoder(self, images):
            return gaussian_code(identity)(images)

    out = dis.headline_results(Model(), FactorImages(), ["mig_dlib", "mig_chen", "sap"], TINY, seed=0,
                               representations=REPRESENTATIONS)
    assert list(out) == ["mig_dlib", "mig_chen", "sap", "disentanglement", "mig_dlib_sampled", "sap_sampled",
                         "disentanglement_sampled"]
    assert dis.headline_keys(["mig_dlib", "mig_chen", "sap"], REPRESENTATIONS) == [
        "mig_dlib", "mig_chen", "sap", "mig_dlib_sampled", "sap_sampled"]
    assert "mig_chen" not in out["disentanglement_sampled"] and "mig_chen" in out["disentanglement"]
    assert out["disentanglement_sampled"]["representation"] == "sampled"


@pytest.mark.slow
def test_importing_the_metrics_does_not_import_sklearn():
    check = "import sys, vae_lab.measure.disentanglement, vae_lab.measure.elbo; assert 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)
