"""vae-train against a bare hand-written loop, same model and data, in one process.

Fashion-MNIST, MLP VAE 784-512-20, Bernoulli likelihood, batch 128, Adam 1e-3, one epoch on the same 55k
training images; prints the test-set ELBO of both and their training throughput.
  python scripts/compare_plain_loop.py [--epochs 1]
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from plain_loop import PlainVAE, test_elbo, train_epochs  # noqa: E402

from hydra import compose, initialize_config_dir  # noqa: E402

from vae_lab.build import build  # noqa: E402
from vae_lab.metrics import evaluate  # noqa: E402
from vae_lab.train import CONFIG_DIR, build_model, train  # noqa: E402

OVERRIDES = ["dataset=fashion_mnist", "latent_dim=20", "encoder.hidden=[512]", "decoder.hidden=[512]",
             "likelihood=bernoulli", "trainer.batch_size=128", "trainer.max_steps=null", "device=cpu",
             "trainer.eval_every=100000", "trainer.checkpoint_every=100000", "eval.max_images=1000"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*OVERRIDES, f"trainer.epochs={args.epochs}", f"seed={args.seed}"])

    data = build("dataset", cfg.dataset, device="cpu")
    x_train = data.batch("train", torch.arange(data.size("train"))).flatten(1)
    x_test = data.batch("test", torch.arange(data.size("test"))).flatten(1)

    torch.manual_seed(args.seed)
    plain = PlainVAE()
    steps, seconds = train_epochs(plain, x_train, epochs=args.epochs, seed=args.seed)
    plain_fig = {**test_elbo(plain, x_test), "images_per_s": steps * 128 / seconds}

    with tempfile.TemporaryDirectory() as run_dir:
        summary = train(cfg, Path(run_dir))
        model = build_model(cfg, data)
        model.load_state_dict(torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=True)["model"])
    ours = evaluate(model, data, "test", seed=args.seed)
    ours_fig = {k: ours[k] for k in ("elbo", "recon_nll", "kl")} | {"images_per_s": summary["images_per_s"]}

    print(json.dumps({"plain_loop": plain_fig, "vae_train": ours_fig}))
    print(f"{'':12}{'test ELBO':>12}{'recon':>10}{'KL':>8}{'images/s':>10}")
    for name, f in (("plain loop", plain_fig), ("vae-train", ours_fig)):
        print(f"{name:12}{f['elbo']:12.1f}{f['recon_nll']:10.1f}{f['kl']:8.1f}{f['images_per_s']:10.0f}")
    print(f"ELBO difference {ours_fig['elbo'] - plain_fig['elbo']:+.2f} nats; "
          f"throughput ratio {ours_fig['images_per_s'] / plain_fig['images_per_s']:.3f}")


if __name__ == "__main__":
    main()
