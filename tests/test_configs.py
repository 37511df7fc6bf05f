"""Every option of every config group, found by globbing configs/, composes and builds with the defaults."""
import pytest
import torch

from conftest import TINY, compose_config, options
from vae_lab.build import build
from vae_lab.build import build_model
from vae_lab.train import train

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


def test_default_adam_is_fused_and_the_same_update():
    """configs/optimizer/adam.yaml turns on torch's fused kernel (a speed choice): it must be the same Adam."""
    from vae_lab.build import build_optimizer

    cfg = compose_config(TINY)
    data = build("dataset", cfg.dataset)
    models = [build_model(cfg, data) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = build_optimizer(cfg, models[0])
    plain = build_optimizer(compose_config([*TINY, "optimizer.fused=null"]), models[1])
    assert fused.param_groups[0]["fused"] is True and not plain.param_groups[0]["fused"]
    schedule = build("kl", cfg.kl, total_steps=10)
    from vae_lab.model import objective

    for step in range(5):
        x = data.batch("train", torch.arange(8 * step, 8 * step + 8))
        for model, opt in zip(models, (fused, plain)):
            opt.zero_grad()
            objective(model(x, torch.Generator().manual_seed(step)), schedule, step).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
