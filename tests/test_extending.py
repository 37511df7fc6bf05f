"""docs/extending.md, run as written: its package is written out from the page and trained through `vae-train`."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FAST = ["trainer.max_steps=6", "trainer.batch_size=32", "trainer.log_every=2", "trainer.eval_every=3",
        "trainer.checkpoint_every=3", "eval.max_images=64", "encoder.width=32", "decoder.hidden=[32]",
        "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "kl.midpoint=0.5", "kl.width=0.1"]


def components(root):
    sys.path.insert(0, str(root))
    try:
        from my_ext import components
    finally:
        sys.path.remove(str(root))
    return components


def blocks(text):
    """(language, body) of every fenced block of a Markdown page."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """my_ext, file by file as the page shows it (each file block opens with `# <path>`)."""
    root = tmp_path_factory.mktemp("user_project")
    written = []
    for _, body in blocks(DOC.read_text()):
        m = re.match(r"# (my_ext/\S+)\n", body)
        if m:
            (root / m[1]).parent.mkdir(parents=True, exist_ok=True)
            (root / m[1]).write_text(body)
            written.append(m[1])
    return root, written


def test_the_page_holds_one_option_per_group(package):
    _, written = package
    for group in ("encoder", "likelihood", "prior", "kl", "dataset"):
        assert sum(f.startswith(f"my_ext/configs/{group}/") for f in written) == 1, group
    assert {"my_ext/components.py", "my_ext/__init__.py", "my_ext/configs/__init__.py"} <= set(written)


@pytest.mark.slow
def test_the_pages_command_trains_with_the_new_options(package):
    root, _ = package
    [command] = [b for lang, b in blocks(DOC.read_text()) if lang == "bash" and "vae-train" in b]
    command = command.replace("\\\n", " ").strip()
    # the page sets PYTHONPATH to the user's project; the entries the test runs with stay after it, so that vae-train
    # imports the vae_lab under test (not another checkout's editable install)
    command = command.replace("PYTHONPATH=$PWD ", "PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} ")
    out = subprocess.run(["bash", "-c", f"{command} {shlex.join(FAST)} hydra.run.dir=run"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = root / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    config = (run / ".hydra" / "config.yaml").read_text()
    for target in ("ResMLPEncoder", "StudentT", "LaplacePrior", "Sigmoid", "Bars"):
        assert f"_target_: my_ext.components.{target}" in config, target

    # train/kl_weight is the mean of w(step) over each logging window: the Sigmoid schedule's values
    Sigmoid = components(root).Sigmoid
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    schedule = Sigmoid(beta=1.0, midpoint=0.5, width=0.1, total_steps=6)
    logged = [(e.step, e.value) for e in acc.Scalars("train/kl_weight")]
    assert logged and all(v == pytest.approx((schedule.weight(s - 2) + schedule.weight(s - 1)) / 2, rel=1e-6)
                          for s, v in logged)


def test_the_pages_laplace_kl_matches_monte_carlo(package):
    import torch

    prior = components(package[0]).LaplacePrior(latent_dim=3, scale=0.7)
    mean, log_var = torch.tensor([[0.3, -1.2, 2.0]]), torch.tensor([[-1.0, 0.5, -3.0]])
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    z = q.sample((200_000,)).squeeze(1)  # (N, 3)
    monte_carlo = (q.log_prob(z).squeeze(1) - torch.distributions.Laplace(0.0, 0.7).log_prob(z)).mean(0)
    assert torch.allclose(prior.kl(mean, log_var, None)[0], monte_carlo, atol=0.01)
    samples = prior.sample(100_000, torch.Generator().manual_seed(0))
    assert samples.abs().mean().item() == pytest.approx(0.7, rel=0.02)  # E|z| = b under Laplace(0, b)
