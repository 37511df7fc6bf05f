"""A few steps on tiny sprites: the files a run leaves, what it logs, and resuming."""
import json

import pytest
import torch
from helpers import TINY, compose_config, scalars, trained_run

from vae_lab.checks import ConfigError
from vae_lab.train import train


def test_run_writes_every_file(tiny_run):
    run_dir = tiny_run.dir
    for name in ("metrics.jsonl", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                 "figures/reconstructions.png", "figures/prior_samples.png"):
        assert (run_dir / name).stat().st_size > 0, name
    saved = json.loads((run_dir / "summary.json").read_text())
    for key in ("elbo", "recon_nll", "kl", "active_units", "steps", "wall_s", "images_per_s"):
        assert key in saved, key
    assert saved["steps"] == 6 and saved["images_per_s"] > 0
    assert saved["elbo"] == pytest.approx(-(saved["recon_nll"] + saved["kl"]))
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [3, 6]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and {"model", "optimizer", "rng"} <= state.keys()


def test_one_events_file_holds_the_hparams_and_each_step_once(tiny_run):
    """The HParams session goes into the run's own events file (not a sub-run), and no train/ scalar is logged twice."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    [events] = tiny_run.dir.glob("events.out.tfevents.*")
    plugin_tags, train_steps = set(), []
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                plugin_tags.add(value.tag)
            if value.tag.startswith("train/"):
                train_steps.append((value.tag, event.step))
    assert {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG} <= plugin_tags
    assert ("train/elbo", 6) in train_steps and len(train_steps) == len(set(train_steps))
    assert list(tiny_run.dir.rglob("events.out.tfevents.*")) == [events]  # no sub-run directory either


def test_logged_elbo_is_minus_recon_plus_kl(tiny_run):
    logged = scalars(tiny_run.dir)
    for tag in ("train/loss", "train/elbo", "train/recon_nll", "train/kl", "train/kl_weight",
                "val/elbo", "val/recon_nll", "val/kl", "val/bits_per_dim", "val/active_units"):
        assert tag in logged, tag
    assert [s for s, _ in logged["train/elbo"]] == [2, 4, 6]
    for (s, elbo), (_, rec), (_, kl) in zip(logged["train/elbo"], logged["train/recon_nll"], logged["train/kl"]):
        assert elbo == pytest.approx(-(rec + kl), rel=1e-5, abs=1e-3), s
    assert any(t.startswith("val_kl_per_dim/") for t in logged)


def test_reported_elbo_ignores_the_kl_weight(tmp_path):
    """beta changes the loss, not the ELBO: at step 1 (same parameters) the logged ELBO is identical."""
    runs = {}
    for beta in (1.0, 8.0):
        run = trained_run(tmp_path / str(beta), [*TINY, f"kl.beta={beta}", "trainer.max_steps=1", "trainer.log_every=1"])
        runs[beta] = scalars(run.dir)
    assert runs[1.0]["train/elbo"] == runs[8.0]["train/elbo"]
    assert runs[1.0]["train/loss"] != runs[8.0]["train/loss"]


def test_mean_reduction_logs_effective_beta(tmp_path):
    logged = scalars(trained_run(tmp_path / "run", [*TINY, "loss.reduction=mean", "kl.beta=2"]).dir)
    assert logged["train/effective_beta"][0][1] == pytest.approx(2 * 64 * 64)


@pytest.mark.slow
def test_resume_reaches_the_same_parameters(tmp_path):
    longer = [*TINY, "dataset.binarize=dynamic", "trainer.max_steps=10", "trainer.epochs=2"]
    trained_run(tmp_path / "straight", longer)
    _, stopped, summary = trained_run(tmp_path / "split", [*longer, "trainer.stop_at_step=4"])
    assert summary["status"] == "stopped"
    stopped.resume = str(tmp_path / "split")
    train(stopped, tmp_path / "split")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    steps = [json.loads(l)["step"] for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 10]
    assert [s for s, _ in scalars(tmp_path / "split")["train/elbo"]] == [2, 4, 6, 8, 10]


def test_a_run_never_overwrites_another(tiny_run):
    with pytest.raises(ConfigError, match="holds another run"):
        train(compose_config(TINY), tiny_run.dir)


@pytest.mark.parametrize("option,tolerance", [
    ("trainer.precision=bf16", 0.05), pytest.param("trainer.compile=true", 1e-3, marks=pytest.mark.slow)])
def test_speed_options_train_the_same_model(option, tolerance, tiny_run, tmp_path):
    """bf16 autocast and torch.compile (scripts/bench.py measures their speed) change the numbers by rounding only."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # graphs compiled by an earlier test (tests/test_bench.py) would be reused, not counted
    counters.clear()
    summary = trained_run(tmp_path / "run", [*TINY, option]).summary
    assert summary["status"] == "completed" and summary["steps"] == tiny_run.summary["steps"]
    for key in ("elbo", "recon_nll"):
        assert summary[key] == pytest.approx(tiny_run.summary[key], rel=tolerance), key
    if "bf16" in option:  # it did run in bfloat16
        assert summary["elbo"] != tiny_run.summary["elbo"]
    else:
        assert counters["stats"]["unique_graphs"] > 0  # it did compile


def test_no_host_sync_between_logging_steps(monkeypatch, tmp_path):
    """Training steps never read a tensor back to the host (on a GPU that would stall every step): with only the
    last step logging, evaluating and saving, nothing is read between the first and the last training batch."""
    from vae_lab.data.sprites import Sprites

    events = []

    def spy(name, real):
        def read(self, *args, **kwargs):
            events.append(name)
            return real(self, *args, **kwargs)
        return read
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))

    def batch(self, split, index, generator=None, _real=Sprites.batch):
        events.append(f"{split} batch")
        return _real(self, split, index, generator)
    monkeypatch.setattr(Sprites, "batch", batch)
    every = [f"trainer.{k}=20" for k in ("log_every", "eval_every", "checkpoint_every")]
    trained_run(tmp_path / "run", [*TINY, "trainer.epochs=3", "trainer.max_steps=20", *every])
    steps = [i for i, e in enumerate(events) if e == "train batch"]
    assert len(steps) == 20 and set(events[steps[0]:steps[-1]]) == {"train batch"}
    assert set(events[steps[-1]:]) - {"train batch", "val batch"}  # the last step's logging does read: the check works


@pytest.mark.parametrize("penalty,steps", [("tcvae", 16), *(pytest.param(p, n, marks=pytest.mark.slow) for p, n in
                                                              (("dip_i", 16), ("dip_ii", 16), ("factor_vae", 16), ("kl", 18)))])
def test_an_epochs_one_image_last_batch_is_left_out_where_the_penalty_needs_two(tmp_path, penalty, steps):
    """257 images in batches of 32: 8 full batches and one of a single image. The β-TCVAE's q(z), DIP-VAE's covariance
    and FactorVAE's permutation need two images; their runs leave that batch out of each epoch (decided at step 0,
    never a failure at step 8), the others train on it."""
    from helpers import SMALL

    run = trained_run(tmp_path / penalty, [*TINY, f"penalty={penalty}", *SMALL.get(penalty, []), "dataset.train_size=257",
                                           "trainer.batch_size=32", "trainer.epochs=2", "trainer.max_steps=null"])
    assert run.summary["status"] == "completed" and run.summary["steps"] == steps
    assert run.summary["epochs"] == 2


def test_a_batch_too_small_for_the_penalty_is_refused_at_setup(tmp_path):
    cfg = compose_config([*TINY, "penalty=tcvae", "trainer.batch_size=1"])
    with pytest.raises(ConfigError, match=r"^trainer.batch_size=1: penalty vae_lab.penalties.TCVAE needs batches of "
                                          r"at least 2 images"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


class WrongNames(torch.nn.Module):
    """A penalty whose forward returns a term its `names` do not list."""

    names = ("kl_penalty",)
    update_names = ()
    min_batch = 1

    def __init__(self, dataset_size=None, latent_dim=None, prior=None):
        super().__init__()

    def forward(self, terms, weight, step):
        part = weight * terms.kl.sum(1).mean()
        return part, {"kl_term": part}


def test_a_penalty_whose_terms_are_not_its_names_fails_at_build(tmp_path):
    cfg = compose_config([*TINY, "penalty._target_=test_training.WrongNames"])
    with pytest.raises(ConfigError, match=r"^penalty._target_=test_training.WrongNames: its forward returns the terms "
                                          r"\['kl_term'\] .* exactly the terms of its `names`, \['kl_penalty'\]"):
        train(cfg, tmp_path / "run")
