"""kill -9 at three random steps, resuming after each: the end is bit-identical to a run never interrupted.

The steps are drawn from a fixed seed, so a failure reproduces; VAE_LAB_KILL_SEED=<n> draws other steps."""
import json
import os
import random
import subprocess
import time

import pytest
import torch
from helpers import scalars

pytestmark = pytest.mark.slow  # five vae-train processes, three of them killed

STEPS = 48
KILL_SEED = 0  # the default draw of kill steps; VAE_LAB_KILL_SEED overrides it


def args(data_dir):
    """Grey-level digits with dynamic binarisation, a KL warm-up and FactorVAE's penalty (a discriminator with its
    own optimiser and random permutations), so every random state, every set of parameters and the step matter."""
    return ["dataset=mnist", f"data_dir={data_dir}", "dataset.val_size=100", "dataset.binarize=dynamic",
            "kl=linear", "kl.warmup_steps=30", "penalty=factor_vae", "penalty.depth=2", "penalty.width=32",
            "encoder.hidden=[32]", "decoder.hidden=[32]", "latent_dim=4",
            "trainer.batch_size=32", f"trainer.max_steps={STEPS}", "trainer.epochs=100", "trainer.log_every=1",
            "trainer.eval_every=2", "trainer.checkpoint_every=3", "eval.max_images=64", "device=cpu"]


def identical(a, b):
    """Nested dicts, lists and tensors equal bit for bit."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(identical, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def logged_steps(run_dir):
    steps = []
    try:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            try:
                steps.append(json.loads(line)["step"])
            except ValueError:
                pass
    except FileNotFoundError:
        pass
    return steps


def kill_at(command, run_dir, step, cwd):
    """Start `command`, SIGKILL it once metrics.jsonl reaches `step`; the last step it had logged."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while max(logged_steps(run_dir), default=0) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -9, f"exited by itself ({proc.returncode}) before step {step}: {err[-2000:]}"
    return max(logged_steps(run_dir))


def test_sigkill_three_times_then_resume_is_bit_identical(tmp_path, idx_data_dir):
    seed = int(os.environ.get("VAE_LAB_KILL_SEED", KILL_SEED))
    rng = random.Random(seed)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(["vae-train", *args(idx_data_dir), f"hydra.run.dir={straight}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    command, reached, kills = ["vae-train", *args(idx_data_dir), f"hydra.run.dir={killed}"], 0, []
    for i, high in enumerate((16, 30, 42)):
        target = rng.randint(max(reached + 2, 4), high)
        reached = kill_at(command, killed, target, tmp_path)
        kills.append((target, reached))
        command = ["vae-train", f"resume={killed}", f"hydra.run.dir={tmp_path / f'resume{i}'}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    context = f"VAE_LAB_KILL_SEED={seed}, killed at (target, last logged) steps {kills}"
    assert done.returncode == 0, f"{context}: {done.stderr[-2000:]}"

    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == STEPS, context
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{context}: {name}"
    assert identical(a["penalty"], b["penalty"]), context  # the discriminator and its Adam
    for name, state in a["rng"]["generators"].items():
        assert torch.equal(state, b["rng"]["generators"][name]), f"{context}: generator {name}"

    lines = [(straight / "metrics.jsonl").read_text().splitlines(), (killed / "metrics.jsonl").read_text().splitlines()]
    assert [json.loads(l)["step"] for l in lines[1]] == list(range(2, STEPS + 1, 2)), context
    assert lines[0] == lines[1], context  # every evaluation once, with the same figures

    tb_a, tb_b = scalars(straight), scalars(killed)
    assert tb_a.keys() == tb_b.keys() and {"train/elbo", "val/elbo"} <= tb_a.keys(), context
    for tag in tb_a:
        steps = [s for s, _ in tb_b[tag]]
        assert steps == [s for s, _ in tb_a[tag]], f"{context}: {tag} steps {steps}"
        if not tag.endswith("images_per_s"):
            assert tb_a[tag] == tb_b[tag], f"{context}: {tag}"
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (straight, killed))
    for key in ("elbo", "recon_nll", "kl", "kl_per_dim", "active_units", "steps"):
        assert summary_a[key] == summary_b[key], f"{context}: {key}"
