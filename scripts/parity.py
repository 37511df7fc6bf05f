"""Train the bare loop and vae-train the same epochs on Fashion-MNIST; compare their test ELBOs and throughputs.

  python scripts/parity.py [--epochs 1] [--seed 0] [--device cpu|cuda]

Both train the MLP 784-512-20 with a Bernoulli likelihood, batch 128, Adam 1e-3, on the same 55k training images:
the bare loop is scripts/plain_loop.py, vae-train runs with its defaults otherwise. Prints one JSON object, then a
table. scripts/bench.py times the two steps side by side, without training to the end.
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

# Before vae_lab.train imports tqdm, which reads it then: no progress bar between the figures.
os.environ.setdefault("TQDM_DISABLE", "1")

# plain_loop and vae_train_config are found because Python puts this script's folder on sys.path.
import torch
from plain_loop import PlainVAE, test_elbo, train_epochs
from vae_train_config import MLP, config

from vae_lab.measure.elbo import measure
from vae_lab.runtime import checkpoint
from vae_lab.runtime.build import build, build_model
from vae_lab.train import train


def parity(epochs, seed, device):
    """Test ELBO, its terms and training images/s of the bare loop and of vae-train, `epochs` epochs each."""
    cfg = config([*MLP, "likelihood=bernoulli", "trainer.batch_size=128", "trainer.max_steps=null",
                  "trainer.eval_every=100000", "trainer.checkpoint_every=100000", "eval.max_images=1000",
                  f"trainer.epochs={epochs}", f"seed={seed}", f"device={device}"])
    data = build("dataset", cfg.dataset, device=device)
    x_train = data.batch("train", torch.arange(data.size("train"), device=device)).flatten(1)
    x_test = data.batch("test", torch.arange(data.size("test"), device=device)).flatten(1)

    torch.manual_seed(seed)
    plain = PlainVAE().to(device)
    steps, seconds = train_epochs(plain, x_train, epochs=epochs, seed=seed)
    plain_fig = {**test_elbo(plain, x_test), "images_per_s": steps * 128 / seconds}

    with tempfile.TemporaryDirectory() as run_dir:
        summary = train(cfg, Path(run_dir))
        model = build_model(cfg, data)
        model.load_state_dict(checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")["model"])
    ours = measure(model.to(device), data, "test", seed=seed)
    ours_fig = {k: ours[k] for k in ("elbo", "recon_nll", "kl")} | {"images_per_s": summary["images_per_s"]}
    return {"plain_loop": plain_fig, "vae_train": ours_fig}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1, help="epochs each trains (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of both (default 0)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    figs = parity(args.epochs, args.seed, args.device)
    plain, ours = figs["plain_loop"], figs["vae_train"]

    print(json.dumps(figs))
    print(f"{'':12}{'test ELBO':>12}{'recon':>10}{'KL':>8}{'images/s':>10}")
    for name, f in (("plain loop", plain), ("vae-train", ours)):
        print(f"{name:12}{f['elbo']:12.1f}{f['recon_nll']:10.1f}{f['kl']:8.1f}{f['images_per_s']:10.0f}")
    print(f"ELBO difference {ours['elbo'] - plain['elbo']:+.2f} nats; "
          f"throughput ratio {ours['images_per_s'] / plain['images_per_s']:.3f}")


if __name__ == "__main__":
    main()
