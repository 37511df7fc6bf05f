"""Known answers of the metrics added with issue 26, each for its family: the unsupervised scores (disentanglement_lib),
DCI-ES's E and S (Eastwood et al. 2023), InfoMEC (Hsu et al. 2023) and UDR (Duan et al. 2020); and vae-eval's
metrics=all, which runs what the data allows and names the rest in one line.

Codes are functions of factor classes drawn at random, as test_disentanglement's: the identity, noise independent of
the factors, a rotation mixing two factors, a nonlinear copy."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from helpers import TINY, trained_run, write_image_folder

from vae_lab import evaluate, results
from vae_lab.compare import main as compare_main
from vae_lab.measure import disentanglement as dis
from vae_lab.measure.disentanglement.dci import dci_es_codes, explicitness
from vae_lab.measure.disentanglement.infomec import infomec_codes
from vae_lab.measure.disentanglement.udr import ALPHA, relative_strength, udr_codes
from vae_lab.measure.disentanglement.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    unsupervised_codes,
)

SIZES = (3, 6, 10, 8, 8)  # factors 3 and 4 share a size: their rotation keeps both dimensions' variance equal
UNSUPERVISED = ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                "gaussian_wasserstein_correlation_norm", "mutual_info_score")


def factors(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in SIZES], 1)


def noise(v, seed=1):
    return np.random.default_rng(seed).standard_normal(v.shape)


def rotated(v):  # factors 3 and 4 mixed by a 45-degree rotation (up to scale)
    v = v.astype(float)
    return np.concatenate([v[:, :3], v[:, 3:4] + v[:, 4:5], v[:, 3:4] - v[:, 4:5]], 1)


def jittered(v, sigma=0.01, seed=2):  # the identity, ties broken (nearest-neighbour MI needs distinct values)
    return v + sigma * np.random.default_rng(seed).standard_normal(v.shape)


# ---- the unsupervised scores -------------------------------------------------------------------------------------

def test_gaussian_total_correlation_is_minus_half_log_det_of_the_correlation_matrix():
    a = np.random.default_rng(0).standard_normal((4, 4))
    cov = a @ a.T + np.diag([0.5, 1.0, 2.0, 3.0])
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(np.linalg.det(corr)), rel=1e-10)
    assert gaussian_total_correlation(np.diag([0.1, 2.0, 5.0])) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_wasserstein_correlation_closed_forms():
    """Unit variances, correlation rho: W2² = 4 - 2 (sqrt(1 + rho) + sqrt(1 - rho)); and disentanglement_lib's form,
    2 tr Σ - 2 tr sqrtm(Σ diag(Σ)), on a random covariance."""
    rho = 0.6
    assert gaussian_wasserstein_correlation([[1, rho], [rho, 1]]) == pytest.approx(
        4 - 2 * (np.sqrt(1 + rho) + np.sqrt(1 - rho)), rel=1e-10)
    a = np.random.default_rng(1).standard_normal((5, 5))
    cov = a @ a.T + np.eye(5)
    reference = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(reference, rel=1e-8)


def test_unsupervised_scores_independent_dimensions_at_the_floor_correlated_ones_above():
    rng = np.random.default_rng(0)
    independent = rng.standard_normal((10_000, 4)) * [1, 2, 3, 0.5]
    floor = unsupervised_codes(independent)
    assert floor["gaussian_total_correlation"] < 0.005 and floor["gaussian_wasserstein_correlation_norm"] < 0.005
    assert floor["mutual_info_score"] < 0.03  # binned MI's upward bias, (bins - 1)² / 2n = 0.018, and no more
    mixed = independent @ np.array([[1, 0.8, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    above = unsupervised_codes(mixed)
    for key in UNSUPERVISED:
        assert above[key] > floor[key] + 0.05, key
    corr = np.corrcoef(mixed, rowvar=False)
    assert above["gaussian_total_correlation"] == pytest.approx(-0.5 * np.log(np.linalg.det(corr)), rel=1e-6)


def test_unsupervised_scores_leave_constant_dimensions_out():
    codes = np.concatenate([np.random.default_rng(0).standard_normal((2000, 3)), np.ones((2000, 2))], 1)
    out = unsupervised_codes(codes)
    assert out["constant_dims"] == 2 and np.isfinite(out["gaussian_total_correlation"])
    assert out == {**unsupervised_codes(codes[:, :3]), "constant_dims": 2}


# ---- DCI-ES ------------------------------------------------------------------------------------------------------

def test_explicitness_of_given_curves():
    capacities = np.log([6, 10, 22, 70])
    assert explicitness(capacities, [0, 0, 0, 0]) == 1.0  # the smallest probe is exact
    assert explicitness(capacities, [1, 1, 1, 1]) == 0.0  # no probe beats the constant predictor
    assert explicitness(capacities, [1.3, 2, 1, 1]) == 0.0  # losses above the baseline count as the baseline
    x = np.array([0.0, 1.0, 2.0])
    assert explicitness(x, [1.0, 0.5, 0.0]) == pytest.approx(0.5)  # a straight fall: half the rectangle
    assert explicitness(x, [1.0, 0.0, 0.7]) == pytest.approx(0.75)  # overfitting later does not count (running min)


def test_dci_es_identity_at_the_maximum_noise_at_the_floor_rotation_invariant():
    train, test = factors(2000, 0), factors(1000, 1)

    def es(transform, **kw):
        return dci_es_codes(transform(train), train, transform(test), test, max_features=64, **kw)

    identity = es(lambda v: v.astype(float))
    assert identity["explicitness"] == pytest.approx(1.0, abs=1e-6) and identity["size"] == 1.0
    assert es(noise)["explicitness"] < 0.01
    assert es(rotated)["explicitness"] == pytest.approx(1.0, abs=1e-6)  # a linear readout undoes a rotation

    def bent(v):  # a nonlinear code: its E is below 1, and the same when two of its dimensions are rotated
        return np.exp(v / 3.0)

    r = 1 / np.sqrt(2)
    rotation = np.eye(5)
    rotation[3:, 3:] = [[r, r], [r, -r]]
    e_bent = np.mean([es(bent, seed=s)["explicitness"] for s in range(3)])
    e_bent_rot = np.mean([es(lambda v: bent(v) @ rotation, seed=s)["explicitness"] for s in range(3)])
    assert 0.5 < e_bent < 0.99 and e_bent_rot == pytest.approx(e_bent, abs=0.03)  # invariant in distribution: W's law is rotation-invariant
    extra = es(lambda v: np.concatenate([v, noise(v)], 1).astype(float))
    assert extra["size"] == 0.5  # 5 factors in 10 dimensions


def test_dci_rotation_lowers_disentanglement_but_not_explicitness():
    """On FactorImages-like codes through dci(): D falls for a rotation (trees read axes), E does not."""
    train, test = factors(600, 0), factors(300, 1)
    from vae_lab.measure.disentanglement.dci import dci_codes

    plain = dci_codes(train.astype(float), train, test.astype(float), test, n_estimators=5)
    mixed = dci_codes(rotated(train), train, rotated(test), test, n_estimators=5)
    assert mixed["disentanglement"] < plain["disentanglement"] - 0.1
    assert (dci_es_codes(rotated(train), train, rotated(test), test, max_features=16)["explicitness"]
            == pytest.approx(dci_es_codes(train.astype(float), train, test.astype(float), test,
                                          max_features=16)["explicitness"], abs=1e-6))


# ---- InfoMEC -----------------------------------------------------------------------------------------------------

def test_infomec_identity_at_the_maximum_noise_at_the_floor_rotation():
    v = factors(2000)
    identity = infomec_codes(jittered(v), v)
    assert identity["infom"] > 0.95 and identity["infoc"] > 0.95 and identity["infoe"] > 0.99
    independent = infomec_codes(noise(v), v)
    assert independent["infoe"] < 0.02  # nothing to read out
    assert np.max(independent["nmi"]) < 0.02  # no information: InfoM and InfoC are then shares of estimator noise
    mixed = infomec_codes(rotated(v), v)
    assert mixed["infom"] < identity["infom"] - 0.15 and mixed["infoc"] < identity["infoc"] - 0.15
    assert mixed["infoe"] == pytest.approx(identity["infoe"], abs=0.01)  # a linear readout: rotation-invariant
    assert infomec_codes(jittered(v), v, seed=3) == infomec_codes(jittered(v), v, seed=3)  # the MI jitter is seeded


# ---- UDR ---------------------------------------------------------------------------------------------------------

def test_relative_strength_known_matrices():
    assert relative_strength(np.eye(4)) == 1.0
    assert relative_strength(np.ones((4, 4))) == pytest.approx(0.25)
    assert relative_strength(np.zeros((0, 3))) == 0.0


def test_udr_codes_alike_models_high_unlike_ones_low():
    """Three models whose codes are the same sources permuted, rescaled and sign-flipped score 1 - alpha, the top
    of disentanglement_lib's UDR (its Lasso shrinks each standardised coefficient of 1 by alpha, and max² / sum of
    one entry is the entry); a model with two sources rotated scores lower; models of independent noise score low."""
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((1000, 4))
    kl = np.ones(4)
    alike = [sources, -2 * sources[:, [2, 0, 3, 1]], 0.5 * sources[:, [1, 0, 2, 3]]]
    out = udr_codes(alike, [kl] * 3)
    assert out["scores"] == pytest.approx([1 - ALPHA] * 3, abs=1e-3) and out["informative_dims"] == [4, 4, 4]
    r = 1 / np.sqrt(2)
    turned = sources.copy()
    turned[:, :2] = sources[:, :2] @ np.array([[r, r], [r, -r]])
    assert udr_codes([*alike, turned], [kl] * 4)["scores"][3] < 1 - ALPHA - 0.1
    unlike = udr_codes([rng.standard_normal((1000, 4)) for _ in range(3)], [kl] * 3)
    assert max(unlike["scores"]) < 0.3
    quiet = udr_codes(alike, [kl, np.array([1, 1, 0.001, 0.001]), kl])  # dimensions of no KL are left out
    assert quiet["informative_dims"] == [4, 2, 4]


@pytest.fixture(scope="module")
def seeds_sweep(tmp_path_factory):
    """Three tiny runs of one setting, seeds 0-2, laid out as a sweep directory."""
    sweep = tmp_path_factory.mktemp("sweep")
    for seed in range(3):
        trained_run(sweep / f"seed={seed}", [*TINY, f"seed={seed}"])
    return sweep


def test_udr_over_three_seeds_into_each_eval_json_and_vae_compare(seeds_sweep, tmp_path, capsys):
    sweep = shutil.copytree(seeds_sweep, tmp_path / "sweep")  # the test writes eval.json files
    evaluate.main([f"sweep={sweep}", "metric_sizes={udr:{n:200}}"])
    out = capsys.readouterr().out
    assert "wrote udr into 3 eval.json files" in out
    scores = {}
    for seed in range(3):
        result = json.loads((sweep / f"seed={seed}" / "eval.json").read_text())
        assert 0.0 <= result["udr"] <= 1.0
        detail = result["udr_detail"]
        assert len(detail["runs"]) == 3 and len(detail["pairwise"]) == 2 and detail["n"] == 200
        scores[seed] = result["udr"]
    # runs=[...] gives the same figures as sweep= (the same images for every model, seeded)
    evaluate.main([f"runs=[{','.join(str(sweep / f'seed={s}') for s in range(3))}]", "metric_sizes={udr:{n:200}}"])
    assert {s: json.loads((sweep / f"seed={s}" / "eval.json").read_text())["udr"] for s in range(3)} == scores
    # a later vae-eval run=... keeps the run's UDR, and vae-compare shows it as a column
    evaluate.main([f"run={sweep / 'seed=0'}", "iwae.k=0", "max_images=32", "pictures=false", "metrics=[]"])
    again = json.loads((sweep / "seed=0" / "eval.json").read_text())
    assert again["udr"] == scores[0] and "elbo" in again
    capsys.readouterr()
    compare_main([str(sweep), "--no-plots"])
    header = capsys.readouterr().out.splitlines()[0].split()
    assert "eval/udr" in header


@pytest.mark.slow  # scripts/results_plots.py in a subprocess
def test_the_beta_figures_draw_any_headline(seeds_sweep, tmp_path):
    sweep = shutil.copytree(seeds_sweep, tmp_path / "sweep")
    evaluate.main([f"sweep={sweep}", "metric_sizes={udr:{n:200}}"])
    for seed in range(3):
        evaluate.main([f"run={sweep / f'seed={seed}'}", "iwae.k=0", "max_images=32", "pictures=false",
                       "metrics=[unsupervised]", "metric_sizes={unsupervised:{n:200}}"])
    script = Path(__file__).resolve().parents[1] / "scripts" / "results_plots.py"
    out = subprocess.run([sys.executable, str(script), "beta", str(sweep), "--out", str(tmp_path / "figs"), "--keys",
                          "udr", "gaussian_total_correlation"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("| setting"))
    assert header.split(" | ")[3:] == ["udr", "gaussian_total_correlation |"]
    row = next(line for line in out.stdout.splitlines() if line.startswith("| beta-VAE"))
    assert "n/a" not in row and (tmp_path / "figs" / "beta.png").read_bytes()[:4] == b"\x89PNG"


# ---- vae-eval metrics=all ----------------------------------------------------------------------------------------

SMALL = ("metric_sizes={mig_dlib:{n:300},mig_chen:{n_images:200,n_samples:100},factor_vae:{n_var:200,n_train:20,"
         "n_eval:10},dci:{n_train:200,n_test:100,n_estimators:5,max_features:16},sap:{n_train:200,n_test:100},"
         "beta_vae:{n_train:20,n_eval:10},infomec:{n:300},unsupervised:{n:300},"
         # disentanglement_lib's nine others: their full sizes take minutes each (test_metrics_dlib.py's TINY)
         "modularity_ridgeway:{n:300},explicitness_ridgeway:{n_train:200,n_test:100},irs:{n:300},"
         "downstream_logreg:{n_train:100,n_test:50},downstream_gbt:{n_train:1000,n_test:50,n_estimators:2},"
         "downstream_reduced:{n_train:100,n_test:50,n_remove:1,n_estimators:2},"
         "downstream_strong:{n_train:100,n_test:50,n_experiments:1,n_estimators:2},"
         "fairness:{n_train:200,n_per_class:10,n_estimators:2},unified:{n_train:200,n_test:100,n_estimators:2}}")


def test_metrics_all_on_a_factorless_dataset_scores_the_unsupervised_ones_alone(tmp_path, capsys):
    images = write_image_folder(tmp_path / "images", 20, size=12)
    run = trained_run(tmp_path / "run", [*(o for o in TINY if not o.startswith("dataset.")), "dataset=image_folder",
                                         f"dataset.path={images}", "dataset.size=12", f"data_dir={tmp_path / 'data'}",
                                         "dataset.val_size=8", "dataset.test_size=10"]).dir
    evaluate.main([f"run={run}", "iwae.k=0", "pictures=false", "metrics=all"])
    result = json.loads((run / "eval.json").read_text())
    measured = [k for k in dis.headline_keys(dis.METRICS) if k in result]
    assert measured == list(UNSUPERVISED)
    assert result["disentanglement"]["unsupervised"]["n"] == 10  # the whole test split
    factor_metrics = [n for n, m in dis.METRICS.items() if m.needs_factors]
    note = result["metrics_note"]
    assert "\n" not in note and all(name in note for name in [*factor_metrics, "udr"])
    assert "no ground-truth factors" in note and "runs=" in note
    printed = [line for line in capsys.readouterr().out.splitlines() if "metrics left out" in line]
    assert len(printed) == 1 and printed[0].endswith(note)


@pytest.mark.slow  # downstream_logreg's cross-validation over sprites' classes: tens of seconds even here
def test_metrics_all_on_sprites_runs_every_one_run_metric(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run.dir, tmp_path / "run")
    evaluate.main([f"run={run}", "iwae.k=0", "max_images=48", "pictures=false", "metrics=all", SMALL])
    result = json.loads((run / "eval.json").read_text())
    one_run = [n for n, m in dis.METRICS.items() if not m.needs_runs]
    assert list(result["disentanglement"]["protocol"]) == one_run
    for key in dis.headline_keys(one_run):
        assert np.isfinite(result[key]), key
    assert result["metrics_note"].startswith("udr left out: needs a set of runs")


def test_every_headline_key_is_declared_as_a_measurement_and_is_a_compare_column():
    from vae_lab.compare.table import NOT_COLUMNS

    for key in dis.headline_keys(dis.METRICS):
        assert key in results.KEYS and results.KEYS[key].role == results.MEASUREMENT, key
        assert key not in NOT_COLUMNS
    declared = {k.name for k in results.DISENTANGLEMENT}
    assert declared <= set(dis.headline_keys(dis.METRICS))  # no declared key that no metric writes
