"""What a trained VAE is measured by."""
