"""Every option of every config group, found by globbing configs/, composes and builds with the defaults; every
experiment preset takes effect; the keys that do not change what is trained are left out where they must be."""
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY, compose_config, grid_overrides, options
from omegaconf import DictConfig, OmegaConf

from vae_lab.rundir import NOT_TRAINED
from vae_lab.runtime.build import build, build_model, build_penalty
from vae_lab.runtime.config import CONFIG_DIR

# every config group of configs/config.yaml's defaults list (a new group is tested the moment it is added there),
# but dataset (tested with its own data below) and experiment (presets)
GROUPS = [g for d in OmegaConf.load(Path(CONFIG_DIR) / "config.yaml").defaults if isinstance(d, DictConfig)
          for g in d if g not in ("dataset", "experiment")]


def test_every_group_has_options():
    for group in GROUPS + ["dataset", "experiment"]:
        assert options(group), group


def _dataset_overrides(dataset, data_dir, grid_dir, image_dir):
    small = {"sprites": TINY[:3], "celeba": [],  # celeba: the official splits
             "image_folder": [f"dataset.path={image_dir}", "dataset.size=28"]}.get(dataset, ["dataset.val_size=100"])
    return [f"dataset={dataset}", f"data_dir={data_dir}", *small, *grid_overrides(grid_dir).get(dataset, [])]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_option_builds_and_runs_a_batch(group, option):
    spec = OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")
    one_kernel = [f"{group}.kernel=4"] if "kernel" in spec else []  # TINY's hidden=[32] is one layer
    cfg = compose_config([*TINY, f"{group}={option}", *one_kernel])
    data = build("dataset", cfg.dataset)
    model = build_model(cfg, data)
    optimizer = build("optimizer", cfg.optimizer)(model.parameters())
    schedule = build("kl", cfg.kl, total_steps=10)
    penalty = build_penalty(cfg, data, model)
    from vae_lab.model import objective

    terms = model(data.batch("train", torch.arange(8)))
    loss, parts = objective(terms, penalty, schedule.weight(3), step=3)
    assert set(parts) == set(penalty.names)
    loss.backward()
    optimizer.step()
    figures = penalty.update(terms, 3, torch.Generator().manual_seed(0))
    assert set(figures) == set(penalty.update_names) and all(torch.isfinite(v) for v in figures.values())
    assert terms.recon_ll.shape == (8,) and torch.isfinite(loss)


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_builds(dataset, dataset_data_dir, grid_dir, image_dir):
    cfg = compose_config(_dataset_overrides(dataset, dataset_data_dir, grid_dir, image_dir))
    data = build("dataset", cfg.dataset)
    x = data.batch("train", torch.arange(4))
    assert x.shape == (4, *data.shape) and 0 <= x.min() and x.max() <= 1
    for split in ("train", "val", "test"):
        assert data.size(split) > 0


def test_default_adam_is_fused_and_the_same_update():
    """configs/optimizer/adam.yaml turns on torch's fused kernel (a speed choice): it must be the same Adam."""
    from vae_lab.runtime.build import build_optimizer

    cfg = compose_config(TINY)
    data = build("dataset", cfg.dataset)
    models = [build_model(cfg, data) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = build_optimizer(cfg, models[0].parameters())
    plain = build_optimizer(compose_config([*TINY, "optimizer.fused=null"]), models[1].parameters())
    assert fused.param_groups[0]["fused"] is True and not plain.param_groups[0]["fused"]
    penalty = build("penalty", cfg.penalty)
    from vae_lab.model import objective

    for step in range(5):
        x = data.batch("train", torch.arange(8 * step, 8 * step + 8))
        for model, opt in zip(models, (fused, plain)):
            opt.zero_grad()
            objective(model(x, torch.Generator().manual_seed(step)), penalty, 1.0, step)[0].backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def preset(name):
    """(leaf values, group choices) that configs/experiment/<name>.yaml sets, those of the presets it includes
    applied in defaults-list order (its own keys at `_self_`, last when the list has none)."""
    path = Path(CONFIG_DIR) / "experiment" / f"{name}.yaml"
    assert path.read_text().startswith("# @package _global_"), f"{path}: its keys must be global"
    spec = yaml.safe_load(path.read_text())
    defaults = spec.pop("defaults", [])
    values, choices = {}, {}
    for entry in defaults if "_self_" in defaults else [*defaults, "_self_"]:
        if entry == "_self_":
            values.update(leaves(spec))
        elif isinstance(entry, str):  # another preset
            more_values, more_choices = preset(entry)
            values.update(more_values)
            choices.update(more_choices)
        else:
            [(key, option)] = entry.items()
            assert key.startswith("override /"), f"{path}: {key}"
            choices[key.removeprefix("override /")] = option
    return values, choices


def leaves(tree, prefix=""):
    """{dotted key: value} of a nested dict; a list is one value, and so is a sweeper's `params` (its keys are dotted
    config keys, e.g. kl.beta, not nested ones)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "hydra.sweeper.params":
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_preset_takes_effect(experiment):
    """Every value the preset sets, and every option it picks, is in the config `experiment=<name>` composes."""
    values, choices = preset(experiment)
    assert values and choices
    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    picked = cfg.hydra.runtime.choices
    assert picked.experiment == experiment
    for key, value in values.items():
        found = OmegaConf.select(cfg, key, default="<missing>")
        assert (OmegaConf.to_container(found) if OmegaConf.is_config(found) else found) == value, key
    for group, option in choices.items():
        assert picked[group] == option, group
        target = OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml").get("_target_")
        assert cfg[group].get("_target_") == target, group
    default = compose_config([], return_hydra_config=True)
    changed = [k for k, v in values.items() if OmegaConf.select(default, k, default="<missing>") != v]
    assert changed or any(default.hydra.runtime.choices[g] != o for g, o in choices.items()), "the preset changes nothing"


def test_not_trained_keys_stay_out_of_sweep_directory_names():
    """hydra.job.override_dirname (the job directory of a sweep) leaves out the seed and every NOT_TRAINED key."""
    cfg = compose_config(["kl.beta=2", "seed=7", *(f"{key}=other" for key in NOT_TRAINED)], return_hydra_config=True)
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == ["seed", *NOT_TRAINED]
    assert cfg.hydra.job.override_dirname == "kl.beta=2"


def test_not_trained_keys_are_not_hyper_parameters():
    from vae_lab.runtime.logbook import flat_hparams

    cfg = compose_config([*TINY, "kl.beta=2", *(f"{key}=other" for key in NOT_TRAINED)])  # none of them null
    hparams = flat_hparams(cfg)
    assert hparams["kl.beta"] == 2 and hparams["trainer.max_steps"] == 6 and hparams["encoder"] == "MLPEncoder"
    assert sorted(set(NOT_TRAINED) & set(hparams)) == []


def test_resume_matching_ignores_only_the_not_trained_keys():
    from vae_lab.runtime.resume import differences

    base = compose_config(TINY)
    for key in [*NOT_TRAINED, "kl.beta", "trainer.max_steps"]:
        other = base.copy()
        OmegaConf.update(other, key, "other", force_add=True)
        expected = [] if key in NOT_TRAINED else [key]
        assert differences(base, other) == differences(other, base) == expected, key
