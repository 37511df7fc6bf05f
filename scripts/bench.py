"""Benchmark vae-train against a bare loop and the usual Dataset + DataLoader pipeline, in one process run.

  python scripts/bench.py [--quick] [--device cpu|cuda]
  python scripts/bench.py --parity [--epochs 1] [--seed 0] [--device cpu|cuda]

Prints one JSON object per measurement, then a table. Throughputs are medians over several timed windows
after warm-up, measured in interleaved rounds so that machine noise hits every contender alike; `paired_*`
ratios are the median of the ratios within each round (robust to the machine slowing down between rounds), with
their quartiles (`_q1`, `_q3`) to show how noisy the machine was. vae-train's figure is the `images_per_s` that
train() returns for a run resumed after its warm-up steps: only the timed steps, without evaluation or checkpoints.

vae-train runs with its defaults and, as `same_kernels`, with the bare loop's kernels: torch.optim.Adam's own
defaults instead of the fused Adam (`optimizer.fused=null`), and torch's binary_cross_entropy_with_logits instead
of vae_lab's CPU Bernoulli path (`likelihood._target_=torch_kernels.TorchBernoulli`, scripts/torch_kernels.py).
The first ratio is what a user gets, the second the framework's own overhead. The kernel and data-path choices
vae_lab makes are timed against their alternatives: Adam (`optimizer_step`), the Bernoulli log-likelihood
(`bernoulli_log_prob`, `log1p_vs_log`), settings read as plain values (`config_read`), sprites scattered into the
canvas (`sprites_batch`) and the data indexed in memory (`ratio_vs_dataloader`).

--parity trains the bare loop and vae-train `--epochs` epochs each on Fashion-MNIST (MLP 784-512-20, Bernoulli,
batch 128, Adam 1e-3, the same 55k training images) and prints both test ELBOs and throughputs: JSON, then a table.
"""
import argparse
import gzip
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

# Before vae_lab.train imports tqdm, which reads it then: no progress bars between the JSON lines.
os.environ.setdefault("TQDM_DISABLE", "1")

# plain_loop and torch_kernels (a `_target_` below) are found because Python puts this script's folder on sys.path.
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from plain_loop import PlainConvVAE, PlainVAE, terms, test_elbo, train_epochs

from vae_lab.data.sprites import IMAGE, PATCH
from vae_lab.likelihoods import Bernoulli
from vae_lab.measure.elbo import measure
from vae_lab.rundir import Status
from vae_lab.runtime import checkpoint
from vae_lab.runtime.build import build, build_model
from vae_lab.runtime.config import CONFIG_DIR, register_resolvers
from vae_lab.train import batches, setup, train, train_step

FMNIST = "/usr/share/datasets/fashion-mnist"
MLP = ["dataset=fashion_mnist", "latent_dim=20", "encoder.hidden=[512]", "decoder.hidden=[512]"]
CONV = ["experiment=keras_tutorial", "dataset=fashion_mnist"]
SAME_KERNELS = ["optimizer.fused=null", "likelihood._target_=torch_kernels.TorchBernoulli"]  # the bare loop's
RESULTS = []


def emit(name, **figures):
    RESULTS.append({"measurement": name, **figures})
    print(json.dumps(RESULTS[-1]), flush=True)


def config(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def vae_train_window(cfg_overrides, steps, device):
    """images/s of vae-train's own loop over `steps` steps after `steps` warm-up steps: the warm-up run stops at
    a checkpoint (trainer.stop_at_step), and train() resumed from it returns the images/s of the timed steps."""
    overrides = [*cfg_overrides, f"trainer.max_steps={2 * steps}", f"trainer.log_every={steps}",
                 "trainer.eval_every=1000000", "trainer.checkpoint_every=1000000", "eval.max_images=100",
                 f"device={device}", "trainer.epochs=1000"]
    with tempfile.TemporaryDirectory() as run_dir:
        for extra, status, step in (([f"trainer.stop_at_step={steps}"], Status.STOPPED, steps),
                                    ([f"resume={run_dir}"], Status.COMPLETED, 2 * steps)):
            summary = train(config([*overrides, *extra]), Path(run_dir))
            if summary["status"] != status or summary["steps"] != step:
                raise RuntimeError(f"vae-train {' '.join(cfg_overrides)}: expected {status} at step {step}, got "
                                   f"{summary['status']} at step {summary['steps']} {summary.get('error', '')}")
    return summary["images_per_s"]  # of the resumed run: its `steps` timed steps only


def bare_window(model, batches, steps):
    """images/s of a hand-written loop: batches() yields input tensors; warm-up `steps`, then time `steps`."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = batches()
    for _phase in ("warm", "timed"):  # the figure is the second's
        images, t0 = 0, time.perf_counter()
        for _ in range(steps):
            x = next(it)
            rec, kl = terms(model, x)
            loss = (rec + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += len(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return images / seconds


def in_memory(x, batch_size=128, flatten=False):
    def batches():
        while True:
            order = torch.randperm(x.shape[0], device=x.device)
            for i in range(0, x.shape[0] - batch_size + 1, batch_size):
                b = x[order[i : i + batch_size]]
                yield b.flatten(1) if flatten else b
    return batches


def dataloader(root, device, flatten=False):
    """pytorch/examples vae/main.py: torchvision dataset + ToTensor + DataLoader(shuffle=True)."""
    import torchvision
    from torchvision import transforms

    ds = torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)

    def batches():
        while True:
            for x, _ in loader:
                x = x.to(device)
                yield x.flatten(1) if flatten else x
    return batches


def torchvision_root():
    root = Path(tempfile.mkdtemp()) / "tv"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in Path(FMNIST).glob("*.gz"):
        with gzip.open(f) as src, open(raw / f.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return str(root)


def throughput(name, overrides, bare_model, bare_batches, loader_batches, rounds, steps, device, same_kernels):
    """vae-train (its defaults, and with the bare loop's kernels) vs the bare loop (`bare_batches`) and the
    DataLoader pipeline (`loader_batches`, if any)."""
    runs = {"ours": [], "ours_same_kernels": [], "bare": [], "loader": []}
    for _ in range(rounds):
        torch.manual_seed(0)
        runs["bare"].append(bare_window(bare_model().to(device), bare_batches, steps))
        if loader_batches:
            runs["loader"].append(bare_window(bare_model().to(device), loader_batches, steps))
        runs["ours"].append(vae_train_window(overrides, steps, device))
        if same_kernels:  # what is left is the framework's own overhead
            runs["ours_same_kernels"].append(vae_train_window([*overrides, *SAME_KERNELS], steps, device))
    med = {k: statistics.median(v) for k, v in runs.items() if v}

    def paired(name, a, b):
        """Median over rounds of the ratio within a round (slow drifts of the machine cancel), and its quartiles."""
        ratios = [x / y for x, y in zip(runs[a], runs[b])]
        q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        return {f"paired_{name}": statistics.median(ratios), f"paired_{name}_q1": q1, f"paired_{name}_q3": q3}
    fig = {"vae_train_images_per_s": med["ours"], "bare_loop_images_per_s": med["bare"],
           "ratio_vs_bare": med["ours"] / med["bare"], **paired("ratio_vs_bare", "ours", "bare"),
           "windows": rounds, "steps": steps}
    if same_kernels:
        fig |= {"vae_train_same_kernels_images_per_s": med["ours_same_kernels"],
                "same_kernels_ratio_vs_bare": med["ours_same_kernels"] / med["bare"],
                **paired("same_kernels_ratio_vs_bare", "ours_same_kernels", "bare")}
    if runs["loader"]:
        fig |= {"dataloader_images_per_s": med["loader"], "ratio_vs_dataloader": med["ours"] / med["loader"],
                **paired("ratio_vs_dataloader", "ours", "loader")}
    emit(f"throughput/{name}", **fig)
    return fig


def microseconds(ways, rounds, device, reps=200, warm=10):
    """Median over `rounds` of the microseconds per call of each function of `ways` (name -> function), taking
    turns within each round."""
    us = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            for i in range(warm + reps):
                if i == warm:
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                fn()
            if device == "cuda":
                torch.cuda.synchronize()
            us[name].append(1e6 * (time.perf_counter() - t0) / reps)
    return {name: statistics.median(v) for name, v in us.items()}


def bernoulli_kernel(rounds, device, shape=(128, 784)):
    """Microseconds for log p(x|z) of one Bernoulli batch, forward and backward: torch's
    binary_cross_entropy_with_logits against vae_lab's Bernoulli.log_prob (a CPU fast path, vae_lab/likelihoods.py)."""
    g = torch.Generator(device=device).manual_seed(0)
    logits = (3 * torch.randn(shape, generator=g, device=device)).requires_grad_()
    x = torch.rand(shape, generator=g, device=device)
    ways = {"torch_bce": lambda: -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1),
            "vae_lab": lambda: Bernoulli(shape[1:]).log_prob(x, logits)}
    med = microseconds({k: lambda f=f: f().mean().backward() for k, f in ways.items()}, rounds, device)
    emit(f"bernoulli_log_prob/{shape[0]}x{shape[1]}", **{f"{k}_fwd_bwd_us": v for k, v in med.items()},
         speedup=med["torch_bce"] / med["vae_lab"])


def log1p_vs_log(rounds, device, shape=(128, 784)):
    """Microseconds for torch.log1p(e) and torch.log(1 + e) (the 1 + e made beforehand) on one batch of pixels: the
    Bernoulli fast path (vae_lab/likelihoods.py) computes log1p from log, as torch's CPU log1p is not vectorised."""
    e = torch.rand(shape, generator=torch.Generator(device=device).manual_seed(0), device=device)  # exp(-|logit|)
    u = 1 + e
    med = microseconds({"log1p": lambda: torch.log1p(e), "log": lambda: torch.log(u)}, rounds, device)
    emit(f"log1p_vs_log/{shape[0]}x{shape[1]}", log1p_us=med["log1p"], log_us=med["log"],
         log1p_vs_log=med["log1p"] / med["log"])


def config_read(rounds, reads=10_000):
    """Microseconds per read of a trainer setting from the composed DictConfig (`cfg.trainer.batch_size`) and from
    the plain values vae_lab's loop reads instead (a SimpleNamespace, vae_lab/train.py)."""
    cfg = config([])
    plain = SimpleNamespace(trainer=SimpleNamespace(**OmegaConf.to_container(cfg.trainer, resolve=True)))

    def dictconfig():
        for _ in range(reads):
            cfg.trainer.batch_size  # noqa: B018 - the read is what is timed

    def namespace():
        for _ in range(reads):
            plain.trainer.batch_size  # noqa: B018

    med = microseconds({"dictconfig": dictconfig, "namespace": namespace}, rounds, "cpu", reps=1, warm=1)
    emit("config_read/trainer.batch_size", dictconfig_read_us=med["dictconfig"] / reads,
         namespace_read_us=med["namespace"] / reads, dictconfig_vs_namespace=med["dictconfig"] / med["namespace"])


def gathered(data):
    """Sprites.batch's images, gathered instead of scattered: each of the 4,096 canvas pixels reads its pixel of the
    patch, or a zero outside it (the alternative vae_lab/data/sprites.py does not take)."""
    padded = torch.cat([data.patches, data.patches.new_zeros(len(data.patches), 1)], 1)  # (720, 1025): 1024 is 0
    canvas = torch.arange(IMAGE, device=data.device)

    def batch(split, index):
        g = data.grid_index(split, index)
        y, x = g % 32, (g // 32) % 32  # the patch's top-left corner on the canvas, as in Sprites.batch
        patch = g // (32 * 32)
        r = canvas[None, :, None] - y[:, None, None]  # (B, 64, 1) row in the patch of each canvas row
        c = canvas[None, None, :] - x[:, None, None]  # (B, 1, 64)
        inside = (r >= 0) & (r < PATCH) & (c >= 0) & (c < PATCH)  # (B, 64, 64)
        local = torch.where(inside, r * PATCH + c, PATCH * PATCH).flatten(1)  # (B, 4096) index into padded rows
        return padded[patch[:, None], local].view(-1, *data.shape)
    return batch


def sprites_batch(data, rounds, device, batches=20, size=128):
    """Milliseconds to assemble a batch of sprites: vae_lab's scatter of the 1,024 patch pixels per image
    (Sprites.batch) against a gather of all 4,096 canvas pixels, over the same batches."""
    order = data.epoch_order("train", 0, 0)
    index = [order[i * size : (i + 1) * size] for i in range(batches)]
    gather = gathered(data)
    for i in index[:2]:
        if not torch.equal(gather("train", i), data.batch("train", i)):
            raise RuntimeError("sprites_batch: the gathered images differ from Sprites.batch's")

    def in_turn(assemble):
        it = itertools.cycle(index)
        return lambda: assemble("train", next(it))
    med = microseconds({"scatter": in_turn(data.batch), "gather": in_turn(gather)}, rounds, device, reps=batches, warm=2)
    emit(f"sprites_batch/{size}", scatter_ms=med["scatter"] / 1000, gather_ms=med["gather"] / 1000,
         gather_vs_scatter=med["gather"] / med["scatter"])


def optimizer_step(model, rounds, steps=200):
    """Microseconds per torch.optim.Adam step on `model`'s parameters: torch's CPU default (one tensor at a time),
    foreach, and fused (vae_lab's default, configs/optimizer/adam.yaml)."""
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    us = {name: [] for name in options}
    for _ in range(rounds):
        for name, kw in options.items():
            params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
            for p in params:
                p.grad = torch.randn_like(p)
            opt = torch.optim.Adam(params, lr=1e-3, **kw)
            for _ in range(10):
                opt.step()
            sync = torch.cuda.synchronize if params[0].is_cuda else (lambda: None)
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            sync()
            us[name].append(1e6 * (time.perf_counter() - t0) / steps)
    med = {k: statistics.median(v) for k, v in us.items()}
    emit("optimizer_step/mlp_fashion_mnist", **{f"adam_{k}_us": v for k, v in med.items()},
         fused_speedup=med["default"] / med["fused"])


def variants(overrides, rounds, steps, device):
    """trainer.precision=bf16 and trainer.compile=true against the plain fp32 eager step, same windows."""
    options = {"fp32_eager": [], "bf16": ["trainer.precision=bf16"], "compile": ["trainer.compile=true"]}
    speeds = {name: [] for name in options}
    for _ in range(rounds):
        for name, extra in options.items():
            speeds[name].append(vae_train_window([*overrides, *extra], steps, device))
    base = statistics.median(speeds["fp32_eager"])
    emit("variants/mlp_fashion_mnist", **{f"{n}_images_per_s": statistics.median(v) for n, v in speeds.items()},
         **{f"{n}_vs_fp32_eager": statistics.median(v) / base for n, v in speeds.items() if n != "fp32_eager"})


def iwae_time(overrides, images, device, k=1000):
    """Seconds for iwae_nll with k samples on `images` test images (an untrained model costs the same), and the
    figure scaled to the whole 10,000-image test split."""
    from vae_lab.measure.iwae import iwae_nll

    cfg = config(overrides)
    data = build("dataset", cfg.dataset, device=device)
    model = build_model(cfg, data).to(device).eval()
    x = data.batch("test", torch.arange(images, device=device))
    g = torch.Generator(device=device).manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, images, 100):
            iwae_nll(model, x[start : start + 100], k, generator=g)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    emit("iwae_k1000/mlp_fashion_mnist", images=images, seconds=seconds,
         seconds_for_10k_test_images=seconds * data.size("test") / images)


def flops_per_step(overrides, device):
    """FLOPs that torch counts in one of vae-train's training steps (forward, objective, backward) on a batch of 128."""
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as run_dir:
        run = setup(config([*overrides, f"device={device}", "trainer.batch_size=128"]), Path(run_dir))
        with FlopCounterMode(display=False) as counter:
            train_step(run, next(batches(run)))
        run.runlog.close()
    return counter.get_total_flops()


def matmul_peak(device, n=2048, reps=10):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def startup(repeats=3):
    """Seconds from process start to the end of the first training step (and its checkpoint), vs importing torch."""
    def wall(cmd):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0

    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        # torch's own start-up: the import, plus torch._dynamo, which torch imports lazily when the first
        # optimizer is built (torch/_compile.py) -- about 2 s here, paid by every PyTorch training script.
        torch_s = min(wall([py, "-c", "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"])
                      for _ in range(repeats))
        bare_s = min(wall([py, "-c", "pass"]) for _ in range(repeats))
        runs = []
        for i in range(repeats):
            runs.append(wall([py, "-m", "vae_lab.train", "dataset=fashion_mnist", "trainer.max_steps=2",
                              "trainer.stop_at_step=1", "device=cpu", f"hydra.run.dir={d}/{i}"]))
    first = min(runs)
    emit("startup", to_first_step_s=first, torch_startup_s=torch_s - bare_s,
         beyond_torch_s=first - torch_s, target_beyond_torch_s=2.0)


def sprites_memory(device):
    code = f"""
import time, torch
from vae_lab.data.sprites import Sprites
def hwm():  # peak resident set of this process (VmHWM; ru_maxrss would carry the parent's peak across exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
base = hwm()
d = Sprites(device="{device}")
built = hwm()
order = d.epoch_order("train", 0, 0)
t0 = time.perf_counter()
n = 0
for i in range(0, d.size("train"), 128):
    x = d.batch("train", order[i:i + 128]); n += 1
if x.is_cuda: torch.cuda.synchronize()
s = time.perf_counter() - t0
peak = hwm()
print(base, built, peak, s, n)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    base, built, peak, seconds, batches = map(float, out)
    emit("sprites_memory", torch_import_rss_mb=base, after_build_rss_mb=built, peak_rss_one_epoch_mb=peak,
         epoch_assembly_s=seconds, ms_per_batch=1000 * seconds / batches, target_peak_mb=600)
    return 1000 * seconds / batches


def parity(epochs, seed, device):
    """vae-train against the bare loop, same model and data, `epochs` epochs each: test ELBO and throughput."""
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

    print(json.dumps({"plain_loop": plain_fig, "vae_train": ours_fig}))
    print(f"{'':12}{'test ELBO':>12}{'recon':>10}{'KL':>8}{'images/s':>10}")
    for name, f in (("plain loop", plain_fig), ("vae-train", ours_fig)):
        print(f"{name:12}{f['elbo']:12.1f}{f['recon_nll']:10.1f}{f['kl']:8.1f}{f['images_per_s']:10.0f}")
    print(f"ELBO difference {ours_fig['elbo'] - plain_fig['elbo']:+.2f} nats; "
          f"throughput ratio {ours_fig['images_per_s'] / plain_fig['images_per_s']:.3f}")


def benchmark(quick, dev):
    # Many short rounds rather than a few long ones: this shared machine drifts by tens of % within a minute.
    rounds, slow_rounds = (3, 2) if quick else (15, 7)  # slow_rounds: the conv model and the compile variant
    emit("machine", device=torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({os.cpu_count()} cores)",
         torch=torch.__version__, threads=torch.get_num_threads())

    cfg = config(MLP)
    data = build("dataset", cfg.dataset, device=dev)
    x_train = data.batch("train", torch.arange(data.size("train"), device=dev))
    tv_root = torchvision_root()

    fig_mlp = throughput("mlp_fashion_mnist", MLP, PlainVAE, in_memory(x_train, flatten=True),
                         dataloader(tv_root, dev, flatten=True), rounds, 100, dev, same_kernels=True)
    optimizer_step(build_model(cfg, data).to(dev), rounds)
    bernoulli_kernel(rounds, dev)
    log1p_vs_log(rounds, dev)
    config_read(rounds)
    fig_conv = throughput("conv_keras_tutorial", CONV, PlainConvVAE, in_memory(x_train), dataloader(tv_root, dev),
                          slow_rounds, 20, dev, same_kernels=not quick)
    sprites = build("dataset", config([]).dataset, device=dev)
    sprites_batch(sprites, rounds, dev)
    idx = sprites.epoch_order("train", 0, 0)

    def sprite_batches():
        while True:
            for i in range(0, len(idx) - 127, 128):
                yield sprites.batch("train", idx[i : i + 128]).flatten(1)
    fig_sprites = throughput("sprites_default", [], lambda: PlainVAE(pixels=4096, latent=10), sprite_batches, None,
                             rounds, 40, dev, same_kernels=False)

    variants(MLP, slow_rounds, 100, dev)
    peak = matmul_peak(dev)
    for name, overrides, fig in (("mlp_fashion_mnist", MLP, fig_mlp), ("conv_keras_tutorial", CONV, fig_conv),
                                 ("sprites_default", [], fig_sprites)):
        flops = flops_per_step(overrides, dev)
        achieved = flops * fig["vae_train_images_per_s"] / 128
        emit(f"gflops/{name}", gflop_per_step=flops / 1e9, achieved_gflops=achieved / 1e9,
             matmul_peak_gflops=peak / 1e9, fraction_of_peak=achieved / peak)

    iwae_time(MLP, 500 if quick else 10_000, dev)
    assembly_ms = sprites_memory(dev)
    step_ms = 1000 * 128 / fig_sprites["vae_train_images_per_s"]
    emit("sprites_data_share", assembly_ms_per_batch=assembly_ms, step_ms=step_ms, share=assembly_ms / step_ms)
    if dev == "cpu":
        startup(2 if quick else 3)

    print("\n| measurement | figure |\n|---|---|")
    for r in RESULTS:
        for k, v in r.items():
            if k != "measurement":
                print(f"| {r['measurement']} {k} | {v:.3g} |" if isinstance(v, float) else f"| {r['measurement']} {k} | {v} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter windows (about 2 minutes on 2 CPU cores)")
    ap.add_argument("--parity", action="store_true",
                    help="instead: train the bare loop and vae-train on Fashion-MNIST, print both test ELBOs")
    ap.add_argument("--epochs", type=int, default=1, help="--parity: epochs each trains (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="--parity: seed of both (default 0)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    register_resolvers()  # as vae-train does before Hydra composes a config
    if args.parity:
        parity(args.epochs, args.seed, args.device)
    else:
        benchmark(args.quick, args.device)


if __name__ == "__main__":
    main()
