"""A bare hand-written VAE training loop (in the style of pytorch/examples' vae/main.py, data in memory):
the yardstick vae_lab's loop is compared against, and `timed`, the one clock of scripts/bench.py, parity.py and
probes.py."""
import time

import torch
import torch.nn.functional as F
from torch import nn


class PlainVAE(nn.Module):
    def __init__(self, pixels=784, hidden=512, latent=20):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(pixels, hidden), nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, pixels)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


class PlainConvVAE(nn.Module):
    """The Keras example's conv VAE (28x28): conv 32, 64 (3x3, stride 2) + dense 16, latent 2, mirrored decoder."""

    def __init__(self, latent=2):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, 16), nn.ReLU(), nn.Linear(16, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                                 nn.ConvTranspose2d(64, 64, 3, 2, 1, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.ReLU(), nn.Conv2d(32, 1, 3, 1, 1))

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z), mu, logvar


class PlainLocatelloVAE(nn.Module):
    """disentanglement_lib's conv encoder and deconv decoder (64x64): TensorFlow's 'same' padding written as torch's
    padding=1 for the 4x4 kernels and none for the 2x2 ones, which is what it is on 64x64 images."""

    def __init__(self, latent=10):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
                                 nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
                                 nn.Unflatten(1, (64, 4, 4)), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 32, 4, 2, 1),
                                 nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z), mu, logvar


def terms(model, x):
    logits, mu, logvar = model(x)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)  # nats per image
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # Kingma & Welling 2014, App. B
    return rec, kl


def timed(fn, device):
    """(fn(), seconds it took), CUDA synchronised before and after so that the GPU work fn queued is counted."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def step(model, opt, x):
    """One Adam step on the batch x; the loss is the negative ELBO averaged over the batch."""
    rec, kl = terms(model, x)
    loss = (rec + kl).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def train_epochs(model, x_train, epochs=1, batch_size=128, lr=1e-3, seed=0):
    """Train on x_train (N, ...) float in [0, 1], in memory; returns (steps, seconds)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)

    def run():
        steps = 0
        for _ in range(epochs):
            order = torch.randperm(x_train.shape[0], generator=g)
            for i in range(0, x_train.shape[0], batch_size):
                step(model, opt, x_train[order[i : i + batch_size]])
                steps += 1
        return steps
    return timed(run, x_train.device)


@torch.no_grad()
def test_elbo(model, x_test, batch_size=1000):
    rec_sum = kl_sum = 0.0
    for i in range(0, x_test.shape[0], batch_size):
        rec, kl = terms(model, x_test[i : i + batch_size])
        rec_sum, kl_sum = rec_sum + rec.sum().item(), kl_sum + kl.sum().item()
    n = x_test.shape[0]
    return {"elbo": -(rec_sum + kl_sum) / n, "recon_nll": rec_sum / n, "kl": kl_sum / n}
