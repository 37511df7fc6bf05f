"""Known answers of disentanglement_lib's other factor-based metrics (modularity and explicitness, IRS, the downstream
tasks, fairness, the unified scores), each under its own convention, on test_disentanglement's FactorImages: the
identity code at the maximum, a code independent of the factors at the floor, a rotation of two factors lowering a
score that is not rotation-invariant and leaving one that is; the reference's worked examples where it has them."""
import math

import numpy as np
import pytest
import torch
from test_disentanglement import SIZES, FactorImages, code, grid, identity, noise, permuted_rescaled, rotated

from vae_lab.measure import disentanglement as dis
from vae_lab.measure.disentanglement.downstream_gbt import downstream_gbt
from vae_lab.measure.disentanglement.downstream_logreg import downstream_logreg, train_sizes
from vae_lab.measure.disentanglement.downstream_reduced import downstream_reduced
from vae_lab.measure.disentanglement.downstream_strong import downstream_strong, intervene
from vae_lab.measure.disentanglement.explicitness_ridgeway import explicitness_ridgeway
from vae_lab.measure.disentanglement.fairness import aggregates, fairness, inter_group_fairness
from vae_lab.measure.disentanglement.irs import irs, irs_codes
from vae_lab.measure.disentanglement.modularity_ridgeway import modularity_codes, modularity_per_code
from vae_lab.measure.disentanglement.unified import aggregate, precision_curve, unified

NEW = ("modularity_ridgeway", "explicitness_ridgeway", "irs", "downstream_logreg", "downstream_gbt",
       "downstream_reduced", "downstream_strong", "fairness", "unified")
SMALL = (2, 3, 4)  # few classes: the logistic regressions' cost grows with them


def orthonormal_rotation(v):  # factors 3 and 4 (of equal size) mixed by an orthonormal 45-degree rotation
    return torch.cat([v[:, :3], (v[:, 3:4] + v[:, 4:5]) / math.sqrt(2), (v[:, 3:4] - v[:, 4:5]) / math.sqrt(2)], 1)


def uniform_noise(v):  # independent of the factors, uniform on [-1, 1]
    return 2 * torch.rand(v.shape, generator=torch.Generator().manual_seed(len(v)), dtype=torch.float64) - 1


# ---- modularity (Ridgeway & Mozer) -------------------------------------------------------------------------------

def test_modularity_of_given_mi_matrices():
    """disentanglement_lib modularity_explicitness_test.py's cases: one factor per code 1, redundant codes 1, an
    empty code 0 (so 2/3 over three codes), a code on two factors equally 1 - 1/(K - 1)."""
    diag = np.diag(5.0 * np.ones(5))
    assert modularity_per_code(diag).mean() == 1.0 and modularity_per_code(np.vstack([diag, diag])).mean() == 1.0
    assert modularity_per_code(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])).mean() == pytest.approx(2 / 3)
    assert modularity_per_code(np.hstack([diag, diag])).mean() == pytest.approx(1 - 1 / 9)
    assert modularity_per_code(np.zeros((4, 4))).mean() == 0.0


def test_modularity_known_cases_on_the_full_grid():
    """On the grid other factors carry exactly no information about a dimension: the identity (and any permuted,
    rescaled copy) scores 1, x + y and x - y each share their MI equally between two factors, 1 - 1/(K - 1), and a
    code in which every dimension is the same function of every factor, with factors of one size, scores 0."""
    f = grid(SIZES)
    assert modularity_codes(f, f)["score"] == pytest.approx(1.0, abs=1e-12)
    assert modularity_codes(permuted_rescaled(f.double()), f)["score"] == pytest.approx(1.0, abs=1e-12)
    rot = modularity_codes(rotated(f.double()), f)
    assert rot["per_code"][3:] == pytest.approx([1 - 1 / (K - 1) for K in (5, 5)], abs=1e-12)
    assert rot["score"] == pytest.approx((3 + 2 * 0.75) / 5, abs=1e-12)
    even = grid((4, 4, 4))
    total = even.sum(1, keepdim=True).double()
    assert modularity_codes(torch.cat([total, 2 * total], 1), even)["score"] == pytest.approx(0.0, abs=1e-12)


def test_modularity_from_images():
    out = dis.METRICS["modularity_ridgeway"].compute(code(identity), FactorImages(), n=3000)
    assert 0.99 < out["score"] <= 1.0  # a finite sample gives the other factors a little MI
    assert np.array(out["mutual_info"]).shape == (5, 5)


# ---- explicitness (Ridgeway & Mozer) -----------------------------------------------------------------------------

EXPLICIT = {"n_train": 1000, "n_test": 500}


def test_explicitness_maximum_floor_and_invariances():
    """Binary factors in their own dimensions are linearly separable: AUC 1. A code independent of the factors:
    0.5. Standardising first and an L2 penalty make it invariant to rescaling a dimension and to an orthonormal
    rotation; a middle value of a factor cannot be picked out linearly from its one dimension, so the identity on
    factors of more values scores below 1."""
    binary = FactorImages((2, 2, 2))
    assert explicitness_ridgeway(code(identity), binary, **EXPLICIT)["score"] == 1.0
    assert explicitness_ridgeway(code(lambda v: torch.tanh(3 * v - 1)), binary, **EXPLICIT)["score"] == 1.0
    data = FactorImages()
    base = explicitness_ridgeway(code(identity), data, **EXPLICIT)
    assert 0.8 < base["score"] < 1.0 and base["per_factor"]["f0"] > base["per_factor"]["f2"]
    for transform in (permuted_rescaled, orthonormal_rotation, rotated):  # x +- y: both scaled by sqrt 2
        assert explicitness_ridgeway(code(transform), data, **EXPLICIT)["score"] == pytest.approx(
            base["score"], abs=1e-3), transform.__name__
    assert explicitness_ridgeway(code(noise), data, **EXPLICIT)["score"] == pytest.approx(0.5, abs=0.03)
    collapsed = explicitness_ridgeway(code(lambda v: torch.cat([v, torch.zeros(len(v), 1)], 1)), data, **EXPLICIT)
    assert collapsed["score"] == pytest.approx(base["score"], abs=1e-3)  # a constant dimension is only centred


# ---- IRS ---------------------------------------------------------------------------------------------------------

def test_irs_known_cases():
    """Holding a factor fixed holds its own dimension fixed: the identity (and a monotone map of it) scores exactly
    1. On the grid, x + y moves by |y - 3.5| <= 3.5 when x is fixed and spreads over 7 from its mean: IRS 1/2 for
    both mixed dimensions, weighted by their spread 7 against 1, 2.5 and 4.5: (1 + 2.5 + 4.5 + 7) / 22. A uniform code
    independent of the factors moves by its quantile: 1 - 0.99. A constant code: 0."""
    data = FactorImages()
    assert irs(code(identity), data, n=3000)["score"] == 1.0
    assert irs(code(lambda v: torch.exp(v / 3) * torch.tensor([1.0, -2.0, 1.0, 3.0, 0.5])), data, n=3000)["score"] == 1.0
    f = grid(SIZES)
    rot = irs_codes(rotated(f.double()), f)
    assert rot["per_dim"][3:] == pytest.approx([0.5, 0.5]) and rot["score"] == pytest.approx(15 / 22)
    assert rot["parents"][:3] == [0, 1, 2]
    assert irs_codes(uniform_noise(f.double()), f)["score"] == pytest.approx(0.01, abs=0.01)
    assert irs(code(lambda v: 0 * v), data, n=500) == {"score": 0.0, "num_active_dims": 0, "per_dim": [],
                                                      "parents": [], "irs_matrix": []}
    padded = irs(code(lambda v: torch.cat([v, torch.ones(len(v), 2)], 1)), data, n=3000)
    assert padded["num_active_dims"] == 5 and padded["score"] == 1.0  # constant dimensions dropped


# ---- downstream tasks --------------------------------------------------------------------------------------------

def test_training_sizes():
    assert train_sizes(10_000) == [10, 100, 1_000, 10_000] and train_sizes(1_000) == [10, 100, 1_000]
    assert train_sizes(5_000) == [10, 100, 1_000, 5_000] and train_sizes(100) == [10, 100]
    with pytest.raises(ValueError, match="1,000"):
        train_sizes(500, 1_000)


@pytest.mark.slow  # about 30 s on a shared core: ten values of C, five folds, one fit per class
def test_downstream_logistic_regression_is_rotation_invariant():
    """The L2-penalised logistic regression sees the code through a dot product: an orthonormal rotation of two
    dimensions gives the same accuracies; a code independent of the factors gives chance, 1/|v| on average."""
    data = FactorImages((2, 3, 3))

    def turned(v):  # factors 1 and 2 mixed by an orthonormal 45-degree rotation
        return torch.cat([v[:, :1], (v[:, 1:2] + v[:, 2:3]) / math.sqrt(2), (v[:, 1:2] - v[:, 2:3]) / math.sqrt(2)], 1)

    base = downstream_logreg(code(identity), data, n_train=1000, n_test=300)
    other = downstream_logreg(code(turned), data, n_train=1000, n_test=300)
    for size in (10, 100, 1000):  # 1000: the full sizes' only
        assert other[f"{size}_test_accuracy"] == pytest.approx(base[f"{size}_test_accuracy"], abs=0.01), size
    assert base["1000_test_accuracy"] > 0.6 and base["per_size"]["1000"]["test_accuracy"]["f0"] == 1.0
    chance = np.mean([1 / n for n in (2, 3, 3)])
    assert downstream_logreg(code(noise), data, n_train=1000, n_test=300)["1000_test_accuracy"] == pytest.approx(
        chance, abs=0.06)


GBT = {"n_train": 1000, "n_test": 500, "n_estimators": 10}


def test_downstream_boosted_trees_known_cases():
    """Trees split one dimension at a time: the identity and any monotone map of each dimension are predicted
    without error from 100 points on; the rotation lowers the two mixed factors' accuracy; independent noise: chance."""
    data = FactorImages()
    base = downstream_gbt(code(identity), data, **GBT)
    assert base["100_test_accuracy"] == base["1000_test_accuracy"] == 1.0
    assert downstream_gbt(code(permuted_rescaled), data, **GBT)["1000_test_accuracy"] == 1.0
    rot = downstream_gbt(code(rotated), data, **GBT)
    assert rot["1000_test_accuracy"] < 0.97 and rot["per_size"]["1000"]["test_accuracy"]["f0"] == 1.0
    chance = np.mean([1 / n for n in SIZES])
    assert downstream_gbt(code(noise), data, **GBT)["1000_test_accuracy"] == pytest.approx(chance, abs=0.05)


REDUCED = {"n_train": 500, "n_test": 300, "n_estimators": 5}


def test_downstream_reduced_known_cases():
    """Each factor in its own dimension: removing the most important one leaves the factor at chance and the others
    predicted without error; a rotation leaves a mixed factor's partner dimension, which still tells it apart."""
    data = FactorImages()
    base = downstream_reduced(code(identity), data, **REDUCED)
    assert base["removed"] == {f"f{k}": [k] for k in range(5)} and base["others_test_accuracy"] == 1.0
    chance = np.mean([1 / n for n in SIZES])
    assert base["factor_test_accuracy"] == pytest.approx(chance, abs=0.05)
    rot = downstream_reduced(code(rotated), data, **REDUCED)
    assert rot["test_accuracy"]["f3"]["f3"] > base["test_accuracy"]["f3"]["f3"] + 0.05
    assert rot["others_test_accuracy"] < 0.95


def test_downstream_strong_interventions_and_known_cases():
    """strong_downstream_task_test.py's check of intervene (another factor, held in training, never that value in
    testing); each factor in its own dimension generalises to the shift without error, noise stays at chance."""
    g = torch.Generator().manual_seed(0)
    data = FactorImages()
    train, test = data.sample_factors(200, g), data.sample_factors(200, g)
    for target in range(5):
        new_train, new_test, j, value = intervene(train, test, target, SIZES, g)
        assert j != target and (new_train[:, j] == value).all() and (new_test[:, j] != value).all()
        assert torch.equal(new_train[:, target], train[:, target])
    strong = {"n_train": 500, "n_test": 300, "n_experiments": 2, "n_estimators": 5}
    base = downstream_strong(code(identity), data, **strong)
    assert base["test_accuracy"] == base["intervened_test_accuracy"] == 1.0 and base["generalization_gap"] == 0.0
    chance = np.mean([1 / n for n in SIZES])
    assert downstream_strong(code(noise), data, **strong)["intervened_test_accuracy"] == pytest.approx(chance, abs=0.05)


# ---- fairness ----------------------------------------------------------------------------------------------------

def test_fairness_worked_examples():
    """disentanglement_lib fairness_test.py: predictions 0/1 of 100 points in sensitive class 0, 100/100 in class 1:
    overall 1/3 : 2/3, distances 1/3 and 1/6, mean 1/3 * 1/3 + 2/3 * 1/6 = 2/9; and its 3 x 3 reductions."""
    assert inter_group_fairness(np.array([[0, 100], [100, 100]])) == pytest.approx((2 / 9, 1 / 3))
    out = aggregates(np.array([[0.0, 2.0, 4.0], [4.0, 0.0, 8.0], [2.0, 10.0, 0.0]]))
    assert out == pytest.approx({"mean_sens:mean_pred": 5.0, "mean_sens:max_pred": 22 / 3, "max_sens:mean_pred": 6.0,
                                 "max_sens:max_pred": 10.0, "mean_pred:mean_sens": 5.0, "mean_pred:max_sens": 22 / 3,
                                 "max_pred:mean_sens": 6.0, "max_pred:max_sens": 10.0})


FAIR = {"n_train": 1000, "n_per_class": 50, "n_estimators": 10}


def test_fairness_known_cases():
    """Each factor in its own dimension: intervening on another factor leaves the target's dimension, so its
    predictions, unchanged: unfairness exactly 0. A target read from x + y alone depends on the sensitive y."""
    data = FactorImages()
    assert fairness(code(identity), data, **FAIR)["max"] == 0.0
    entangled = fairness(code(lambda v: torch.cat([v[:, :3], v[:, 3:4] + v[:, 4:5]], 1)), data, **FAIR)
    assert np.array(entangled["mean_fairness"])[3, 4] > 0.1 and entangled["mean_fairness"][0][1] == 0.0
    assert entangled["mean"] == entangled["scores"]["mean_fairness:mean_pred:mean_sens"] > 0


# ---- unified scores ----------------------------------------------------------------------------------------------

def test_precision_curve_of_given_matrices():
    """One edge per factor: K independent groups at every threshold, the one step from 1 to 0 giving area K. Every
    code on every factor: one group, and no area (all thresholds equal)."""
    assert precision_curve(np.eye(4)) == (pytest.approx(4.0), 4)
    assert precision_curve(np.ones((3, 3))) == (0.0, 1)
    # two groups at threshold 1; from 0.5 down a 0.5 edge joins them: trapezoids (2 + 1) / 2 * 0.5 + 1 * 0.5
    assert precision_curve(np.array([[1.0, 0.5], [0.0, 1.0]])) == (pytest.approx(1.25), 2)
    assert aggregate(np.eye(3), grid((3, 3, 3)))["mig"] == pytest.approx(np.mean([1 / math.log(3)] * 3))


UNIFIED = {"n_train": 1000, "n_test": 500, "n_estimators": 10}


def test_unified_known_cases():
    """disentanglement_lib unified_scores_test.py's cases: the identity's tree importances give DCI 1 and its MI
    matrix MIG and modularity near 1; a duplicated code keeps modularity 1 and brings MIG and SAP to 0."""
    data = FactorImages()
    base = unified(code(identity), data, **UNIFIED)
    assert base["gbt_dci_disentanglement"] > 0.99 and base["mi_modularity"] > 0.99 and base["mi_mig"] > 0.95
    twice = unified(code(lambda v: torch.cat([v, v], 1)), data, **UNIFIED)
    assert twice["mi_mig"] == pytest.approx(0.0, abs=1e-12) and twice["svm_sap"] == 0.0
    assert twice["mi_modularity"] > 0.99
    assert unified(code(rotated), data, **UNIFIED)["gbt_dci_disentanglement"] < base["gbt_dci_disentanglement"] - 0.1
    assert unified(code(noise), data, **UNIFIED)["gbt_dci_disentanglement"] < 0.1


# ---- the records -------------------------------------------------------------------------------------------------

TINY = {"modularity_ridgeway": {"n": 300}, "explicitness_ridgeway": {"n_train": 200, "n_test": 100},
        "irs": {"n": 300}, "downstream_reduced": {"n_train": 100, "n_test": 50, "n_remove": 1, "n_estimators": 2},
        "downstream_strong": {"n_train": 100, "n_test": 50, "n_experiments": 1, "n_estimators": 2},
        "downstream_gbt": {"n_train": 1000, "n_test": 50, "n_estimators": 2},
        "fairness": {"n_train": 200, "n_per_class": 10, "n_estimators": 2},
        "unified": {"n_train": 200, "n_test": 100, "n_estimators": 2}}


def test_new_records_run_through_headline_results():
    """Each record's headline parts are in its result and become the eval.json keys it declares, after the first
    six metrics in METRICS, among the others (downstream_logreg's, whose cross-validation takes seconds, in its own test)."""
    assert set(NEW) <= set(list(dis.METRICS)[6:]) and set(TINY) == set(NEW) - {"downstream_logreg"}

    class Model(torch.nn.Module):
        def encoder(self, images):
            v = images.flatten(1)
            return v, torch.full_like(v, -9.0)

    run = [name for name in NEW if name != "downstream_logreg"]
    out = dis.headline_results(Model(), FactorImages(SMALL), run, TINY, seed=0)
    keys = dis.headline_keys(run)
    assert dis.headline_keys(NEW)[:6] == ["modularity_ridgeway", "explicitness_ridgeway", "irs",
                                          "downstream_logreg_10_test_accuracy", "downstream_logreg_100_test_accuracy",
                                          "downstream_gbt_10_test_accuracy"]
    assert "fairness_mean" in keys and "downstream_strong_generalization_gap" in keys and "unified_mi_mig" in keys and "downstream_gbt_1000_test_accuracy" in keys
    assert list(out) == [*keys, "disentanglement"] and all(isinstance(out[k], float) for k in keys)
    assert out["disentanglement"]["protocol"]["irs"] == {"n": 300}
