"""vae_lab: configurable beta-VAE experiments with every ELBO term in nats per image."""
