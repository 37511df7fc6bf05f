"""Every option of every config group, found by globbing configs/, composes and builds with the defaults."""
import pytest
import torch

from conftest import TINY, compose_config, options
from vae_lab.build import build
from vae_lab.train import build_model, train

GROUPS = ["encoder", "decoder", "likelihood", "prior", "kl", "optimizer"]


def test_every_group_has_options():
    for group in GROUPS + ["dataset", "experiment"]:
        assert options(group), group


def _dataset_overrides(dataset, data_dir):
    small = ["dataset.val_size=100"] if dataset != "sprites" else TINY[:3]
    return [f"dataset={dataset}", f"data_dir={data_dir}", *small]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_option_builds_and_runs_a_batch(group, option):
    cfg = compose_config([*TINY, f"{group}={option}"])
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    optimizer = build("optimizer", cfg.optimizer)(model.parameters())
    schedule = build("kl", cfg.kl, total_steps=10)
    from vae_lab.model import objective

    terms = model(data.batch("train", torch.arange(8)))
    loss = objective(terms, schedule, step=3)
    loss.backward()
    optimizer.step()
    assert terms.recon_ll.shape == (8,) and torch.isfinite(loss)


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_builds(dataset, idx_data_dir):
    cfg = compose_config(_dataset_overrides(dataset, idx_data_dir))
    data = build("dataset", cfg.dataset)
    x = data.batch("train", torch.arange(4))
    assert x.shape == (4, *data.shape) and 0 <= x.min() and x.max() <= 1
    for split in ("train", "val", "test"):
        assert data.size(split) > 0


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_trains_two_steps(experiment, idx_data_dir, tmp_path):
    cfg = compose_config([f"experiment={experiment}", f"data_dir={idx_data_dir}", "dataset.val_size=100",
                          "trainer.max_steps=2", "eval.max_images=50"])
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 2 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
