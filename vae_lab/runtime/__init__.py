"""What carries out a training run."""
