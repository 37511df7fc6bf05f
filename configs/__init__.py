"""vae_lab's config groups, shipped in the wheel as the package `vae_lab.configs` (see pyproject.toml)."""
