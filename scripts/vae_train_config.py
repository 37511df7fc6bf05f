"""vae-train's side of scripts/bench.py and scripts/parity.py: its config, composed as vae-train composes it, and the
overrides that give it the bare loop's MLP (scripts/plain_loop.py's PlainVAE)."""
from hydra import compose, initialize_config_dir

from vae_lab.runtime.config import CONFIG_DIR, register_resolvers

MLP = ["dataset=fashion_mnist", "latent_dim=20", "encoder.hidden=[512]", "decoder.hidden=[512]"]  # 784-512-20


def config(overrides):
    register_resolvers()  # as vae-train does before Hydra composes a config
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)
