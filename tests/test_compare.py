"""vae-compare on run directories made here: the table, --sort, --filter, CSV, Markdown and the plots."""
import csv
import json
import subprocess
import sys

import pytest
from helpers import write_run_config

from vae_lab import compare

PNG = b"\x89PNG"


def make_run(path, overrides, summary=None, eval_json=None):
    """A fake run directory, never trained: the .hydra/ files vae-train writes (a config of three keys), and the
    summary.json and eval.json given; only what vae-compare reads."""
    values = dict(o.split("=", 1) for o in overrides)
    config = {"seed": int(values.get("seed", 0)), "latent_dim": int(values.get("latent_dim", 10)),
              "kl": {"_target_": "vae_lab.kl_schedules.Constant", "beta": float(values.get("kl.beta", 1))}}
    write_run_config(path, config, overrides, {"kl": "constant", "encoder": "mlp", "hydra/launcher": "basic"})
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    if eval_json is not None:
        (path / "eval.json").write_text(json.dumps(eval_json))
    return path


def completed(kl, rec, units=4):
    return {"status": "completed", "elbo": -(kl + rec), "recon_nll": rec, "kl": kl, "active_units": units,
            "bits_per_dim": 0.1, "kl_per_dim": [kl], "steps": 100, "wall_s": 3.0}


@pytest.fixture
def sweep(tmp_path):
    """A 2x2 grid over kl.beta and latent_dim (one job failed, one killed before its summary), fixed seed."""
    root = tmp_path / "sweep"
    grid = {(1, 2): (20.0, 60.0), (1, 8): (30.0, 40.0), (4, 2): (8.0, 75.0)}
    for (beta, dim), (kl, rec) in grid.items():
        make_run(root / f"kl.beta={beta},latent_dim={dim}" / "seed=0", [f"kl.beta={beta}", f"latent_dim={dim}", "seed=0"],
                 completed(kl, rec, units=dim // 2), eval_json={"iwae_nll": kl + rec - 1, "mig_dlib": 0.1 * dim,
                                                                "mig_dlib_per_factor": {"shape": 0.5}, "per_dim": [1, 2],
                                                                "split": "test", "wall_s": 1.5})
    make_run(root / "kl.beta=4,latent_dim=8" / "seed=0", ["kl.beta=4", "latent_dim=8", "seed=0"],
             {"status": "failed", "error": "training diverged at step 7: loss nan (recon_nll nan, kl nan)"})
    make_run(root / "kl.beta=16,latent_dim=8" / "seed=0", ["kl.beta=16", "latent_dim=8", "seed=0"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def table(capsys, *args):
    compare.main([*map(str, args), "--no-plots"])
    lines = capsys.readouterr().out.splitlines()
    return lines[0].split(), lines[2:-1], lines[-1]


def test_table_has_a_row_per_run_and_only_the_overrides_that_differ(sweep, capsys):
    header, rows, footer = table(capsys, sweep)
    assert [r.split()[:2] for r in rows] == [["1", "2"], ["1", "8"], ["4", "2"], ["4", "8"], ["16", "8"]]
    # val/: summary.json's measurements in vae_lab.results' order; eval/: eval.json's, without its bookkeeping
    assert header == ["kl.beta", "latent_dim", "status", "val/elbo", "val/recon_nll", "val/kl", "val/bits_per_dim",
                      "val/active_units", "eval/iwae_nll", "eval/mig_dlib", "error", "run"]
    assert len(rows) == 5 and footer == "5 runs: 3 completed, 1 failed, 1 no summary"
    failed = next(r for r in rows if " failed " in r)
    assert "training diverged at step 7: loss nan" in failed and "kl.beta=4,latent_dim=8/seed=0" in failed
    assert any("no summary" in r and "no summary.json: still running, or killed" in r for r in rows)


def test_sort_puts_runs_without_the_key_last(sweep, capsys):
    _, rows, _ = table(capsys, sweep, "--sort", "elbo", "--desc")
    assert [r.split()[3] for r in rows[:3]] == ["-70", "-80", "-83"]
    _, rows, _ = table(capsys, sweep, "--sort", "val/elbo")
    assert [r.split()[3] for r in rows[:3]] == ["-83", "-80", "-70"]
    assert all("completed" not in r for r in rows[3:])
    _, rows, _ = table(capsys, sweep, "--sort", "kl.beta", "--desc")
    assert [r.split()[0] for r in rows] == ["16", "4", "4", "1", "1"]


@pytest.mark.parametrize("expression,kept", [
    ("kl.beta>1", 3), ("kl.beta>=4", 3), ("kl.beta=1", 2), ("status=completed", 3), ("status!=completed", 2),
    ("elbo>-75", 1), ("eval/mig_dlib<0.5", 2), ("encoder=mlp", 5), ("kl=constant", 5), ("run~beta=4,", 2),
    ("kl._target_~Constant$", 5), ("error~diverged", 1), ("eval/mig_dlib_per_factor.shape=0.5", 3), ("eval/split=test", 3),
])
def test_filter(sweep, capsys, expression, kept):
    _, rows, footer = table(capsys, sweep, "--filter", expression)
    assert len(rows) == kept, expression
    assert footer.startswith(f"{kept} runs of 5")


def test_filters_combine(sweep, capsys):
    _, rows, _ = table(capsys, sweep, "--filter", "kl.beta<=4", "--filter", "latent_dim=8")
    assert len(rows) == 2


@pytest.mark.parametrize("args,message", [
    (["--filter", "kl.beta"], "--filter 'kl.beta': write KEY OP VALUE"),
    (["--filter", "nope>1"], "'nope': no run has this key; try one of"),
    (["--sort", "nope"], "'nope': no run has this key"),
])
def test_bad_options_are_one_line(sweep, args, message):
    with pytest.raises(SystemExit) as e:
        compare.main([str(sweep), *args])
    assert str(e.value).startswith(f"vae-compare: error: {message}")


def test_not_a_sweep(tmp_path):
    with pytest.raises(SystemExit, match="holds no run directory"):
        compare.main([str(tmp_path)])


def test_csv_and_markdown(sweep, tmp_path, capsys):
    compare.main([str(sweep), "--no-plots", "--sort", "elbo", "--csv", str(tmp_path / "t.csv"),
                  "--markdown", str(tmp_path / "t.md")])
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 5 and rows[0]["run"] == "kl.beta=4,latent_dim=2/seed=0"
    assert float(rows[0]["val/elbo"]) == -83.0 and rows[0]["eval/iwae_nll"] == "82.0"
    assert rows[3]["status"] == "failed" and rows[3]["val/elbo"] == "" and "diverged" in rows[3]["error"]
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0].startswith("| kl.beta | latent_dim | status | val/elbo |") and md[1].startswith("|---|")
    assert len(md) == 7 and "| kl.beta=4,latent_dim=2/seed=0 |" in md[2]


def test_run_directories_may_be_given_one_by_one(sweep, capsys):
    header, rows, _ = table(capsys, sweep / "kl.beta=1,latent_dim=2" / "seed=0", sweep / "kl.beta=4,latent_dim=2" / "seed=0")
    assert header[:2] == ["kl.beta", "status"] and len(rows) == 2
    assert rows[0].split()[-1] == "kl.beta=1,latent_dim=2/seed=0"


def test_plots(sweep, capsys):
    compare.main([str(sweep)])
    out = capsys.readouterr().out
    for name in ("rate_distortion.png", "vs_kl.beta.png", "vs_latent_dim.png"):
        assert (sweep / name).read_bytes()[:4] == PNG and f"wrote {sweep / name}" in out
    assert not (sweep / "vs_seed.png").exists()


@pytest.fixture
def study_sweeps(tmp_path):
    """Two study presets' sweeps as `vae-train -m experiment=locatello_<model> seed=0,1,2` leaves them (each job's
    overrides: the grid's key from the preset, the experiment, the seed), every run evaluated; one β-TCVAE job
    killed before its summary."""
    root = tmp_path / "study"
    grids = {"locatello_factor_vae": ("penalty.gamma", [10, 40, 100]), "locatello_beta_tcvae": ("kl.beta", [1, 6])}
    for experiment, (key, grid) in grids.items():
        for value in grid:
            for seed in range(3):
                overrides = [f"{key}={value}", f"experiment={experiment}", f"seed={seed}"]
                path = root / experiment / f"experiment={experiment},{key}={value}" / f"seed={seed}"
                write_run_config(path, {"seed": seed}, overrides, {"experiment": experiment, "penalty": "x"})
                if experiment == "locatello_beta_tcvae" and value == 6 and seed == 2:
                    continue
                (path / "summary.json").write_text(json.dumps(completed(10.0, 50.0)))
                (path / "eval.json").write_text(json.dumps({"mig_dlib": value / 100 + seed / 1000,
                                                            "mig_dlib_sampled": value / 200, "split": "test"}))
    return root


def test_study_groups_by_model_and_setting(study_sweeps):
    from vae_lab.compare.plots import models

    runs = [compare.table.Row(p) for p in compare.table.find_runs([study_sweeps])]
    groups = models(runs)
    assert set(groups) == {"locatello_factor_vae", "locatello_beta_tcvae"}
    keys, settings = groups["locatello_factor_vae"]
    assert keys == ["penalty.gamma"] and list(settings) == ["10", "40", "100"]  # in the order of their values
    assert [sorted(r.values["seed"] for r in members) for members in settings.values()] == [[0, 1, 2]] * 3
    keys, settings = groups["locatello_beta_tcvae"]
    assert keys == ["kl.beta"] and {s: len(m) for s, m in settings.items()} == {"1": 3, "6": 3}


def test_study_plots_one_figure_per_eval_measurement(study_sweeps, capsys):
    compare.main([str(study_sweeps)])
    out = capsys.readouterr().out
    for name in ("study_mig_dlib.png", "study_mig_dlib_sampled.png"):
        assert (study_sweeps / name).read_bytes()[:4] == PNG and f"wrote {study_sweeps / name}" in out
    assert not (study_sweeps / "study_split.png").exists()  # bookkeeping is not a score
    assert not list(study_sweeps.glob("study_*elbo*"))  # summary.json's figures are not eval.json's


def test_no_study_plot_for_a_grid_of_single_runs(sweep, capsys):
    compare.main([str(sweep)])
    assert not list(sweep.glob("study_*.png"))


@pytest.mark.parametrize("values,log", [([0.5, 1, 2, 4, 8], True), ([2, 4, 8], False), ([0, 1, 100], False)])
def test_log_axis_when_values_span_a_decade(values, log):
    assert compare.table.decades(values) == log


def test_a_few_hundred_runs(tmp_path, capsys):
    root = tmp_path / "big"
    for i in range(300):
        beta, dim, seed = 2.0 ** (i % 10 - 3), 2 ** (i // 10 % 6 + 1), i // 60
        make_run(root / f"kl.beta={beta},latent_dim={dim}" / f"seed={seed}",
                 [f"kl.beta={beta}", f"latent_dim={dim}", f"seed={seed}"], completed(10 / beta, 50 + beta, dim))
    header, rows, footer = table(capsys, root, "--sort", "elbo", "--filter", "latent_dim>2")
    assert len(rows) == 250 and footer == "250 runs of 300: 250 completed"
    assert header[:3] == ["kl.beta", "latent_dim", "seed"]


@pytest.mark.slow
def test_module_entry_point(sweep):
    out = subprocess.run([sys.executable, "-m", "vae_lab.compare", str(sweep), "--no-plots", "--filter", "status=failed"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1 runs of 5: 1 failed" in out.stdout
