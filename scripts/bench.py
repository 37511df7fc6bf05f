"""Benchmark vae-train against a bare loop and the usual Dataset + DataLoader pipeline, in one process run.

  python scripts/bench.py [--quick] [--device cpu|cuda] [--only streaming|stacked] [--streaming-images N]

Prints one JSON object per measurement as it is taken, then a table. Throughputs are medians over several timed
windows after warm-up, measured in interleaved rounds so that machine noise hits every contender alike; `paired_*`
ratios are the median of the ratios within each round (robust to the machine slowing down between rounds), with
their quartiles (`_q1`, `_q3`) to show how noisy the machine was. vae-train's figure is the `images_per_s` that
train() returns for a run resumed after its warm-up steps: only the timed steps, without evaluation or checkpoints.

vae-train runs with its defaults and, as `same_kernels`, with the bare loop's Adam: torch.optim.Adam's own defaults
instead of the fused Adam (`optimizer.fused=null`). The first ratio is what a user gets, the second the framework's
own overhead. The kernel and data-path choices vae_lab makes are timed against their alternatives: Adam
(`optimizer_step`), settings read as plain values (`config_read`), sprites scattered into the canvas
(`sprites_batch`) and the data indexed in memory (`ratio_vs_dataloader`). `streaming` times a cache bigger than
the memory budget gathered from its memory map (dataset.resident=false) against the same cache held resident, from
the page cache and from the disk (its docstring says what each figure means). `stacked/<model>/M=<m>` trains M
models as one stack (hydra/launcher=stacked) against the same M one after another and M processes side by side
(joblib), in images per second per model.

Every time is taken by scripts/plain_loop.py's `timed`, which synchronises CUDA before and after. Start-up and the
sprites grid's memory are measured in fresh processes (scripts/probes.py). scripts/parity.py trains both loops to
the end and compares their test ELBOs.
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

# plain_loop and vae_train_config are found because Python puts this script's folder on sys.path.
import numpy as np
import torch
from omegaconf import OmegaConf
from plain_loop import PlainConvVAE, PlainLocatelloVAE, PlainVAE, step, timed
from vae_train_config import MLP, config

from vae_lab.data.base import IndexedImageData, available_memory
from vae_lab.data.npz import write_npz
from vae_lab.data.sprites import IMAGE, PATCH
from vae_lab.measure.iwae import iwae_nll
from vae_lab.rundir import Status
from vae_lab.runtime.build import build, build_model
from vae_lab.train import batches, setup, train, train_stacked, train_step

FMNIST = "/usr/share/datasets/fashion-mnist"
PROBES = str(Path(__file__).with_name("probes.py"))
CONV = ["experiment=keras_tutorial", "dataset=fashion_mnist"]
LOCATELLO = ["experiment=locatello"]  # disentanglement_lib's conv networks on sprites, batch 64
SAME_KERNELS = ["optimizer.fused=null"]  # torch.optim.Adam's defaults, the bare loop's
STACK_SIZES = (1, 4, 16)  # models in a stack (hydra/launcher=stacked)


def repeated(fn, n):
    """A function that calls fn n times and drops the results, as a timed loop would."""
    def run():
        for _ in range(n):
            fn()
    return run


def vae_train_window(cfg_overrides, steps, device):
    """images/s of vae-train's own loop over `steps` steps after `steps` warm-up steps: the warm-up run stops at
    a checkpoint (trainer.stop_at_step), and train() resumed from it returns the images/s of the timed steps."""
    overrides = window_overrides(cfg_overrides, steps, device)
    with tempfile.TemporaryDirectory() as run_dir:
        for extra, status, at in (([f"trainer.stop_at_step={steps}"], Status.STOPPED, steps),
                                  ([f"resume={run_dir}"], Status.COMPLETED, 2 * steps)):
            summary = train(config([*overrides, *extra]), Path(run_dir))
            if summary["status"] != status or summary["steps"] != at:
                raise RuntimeError(f"vae-train {' '.join(cfg_overrides)}: expected {status} at step {at}, got "
                                   f"{summary['status']} at step {summary['steps']} {summary.get('error', '')}")
    return summary["images_per_s"]  # of the resumed run: its `steps` timed steps only


def bare_window(model, batches, steps, device):
    """images/s of the bare loop (plain_loop.step): batches() yields input tensors; warm-up `steps`, then time
    `steps`."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = batches()

    def window():
        images = 0
        for x in itertools.islice(it, steps):
            step(model, opt, x)
            images += len(x)
        return images
    timed(window, device)  # warm-up
    images, seconds = timed(window, device)
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


def torchvision_root(folder):
    """Fashion-MNIST unpacked where torchvision.datasets.FashionMNIST looks for it under `folder`."""
    raw = Path(folder) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in Path(FMNIST).glob("*.gz"):
        with gzip.open(f) as src, open(raw / f.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return folder


def sprite_batches(sprites, size, flatten):
    """Batches of `size` sprites of the train split in a fixed order, rendered as vae-train renders them."""
    idx = sprites.epoch_order("train", 0, 0)

    def batches():
        while True:
            for i in range(0, len(idx) - size + 1, size):
                x = sprites.batch("train", idx[i : i + size])
                yield x.flatten(1) if flatten else x
    return batches


def throughput(overrides, bare_model, bare_batches, loader_batches, rounds, steps, device, same_kernels):
    """vae-train (its defaults, and with the bare loop's Adam) vs the bare loop (`bare_batches`) and the
    DataLoader pipeline (`loader_batches`, if any)."""
    runs = {"ours": [], "ours_same_kernels": [], "bare": [], "loader": []}
    for _ in range(rounds):
        torch.manual_seed(0)
        runs["bare"].append(bare_window(bare_model().to(device), bare_batches, steps, device))
        if loader_batches:
            runs["loader"].append(bare_window(bare_model().to(device), loader_batches, steps, device))
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
    return fig


def window_overrides(cfg_overrides, steps, device):
    """A run of 2 x `steps` steps that neither validates nor saves in between: the timed part of a window."""
    return [*cfg_overrides, f"trainer.max_steps={2 * steps}", f"trainer.log_every={steps}",
            "trainer.eval_every=1000000", "trainer.checkpoint_every=1000000", "eval.max_images=100",
            f"device={device}", "trainer.epochs=1000"]


def stacked_window(cfg_overrides, m, steps, device):
    """images/s per model of `m` models (seeds 0..m-1) trained as one stack (vae_lab.train.train_stacked), over
    `steps` steps after `steps` warm-up steps, as vae_train_window times one; a stack of one is a lone run."""
    overrides = window_overrides(cfg_overrides, steps, device)
    with tempfile.TemporaryDirectory() as root:
        dirs = [Path(root) / f"m{i}" for i in range(m)]
        record = {"id": "bench", "manifest": str(Path(root) / "stack.json"), "members": []}
        for extra, status in (([f"trainer.stop_at_step={steps}"], Status.STOPPED), (["resume"], Status.COMPLETED)):
            cfgs = [config([*overrides, f"seed={i}", *(extra if extra != ["resume"] else [f"resume={d}"])])
                    for i, d in enumerate(dirs)]
            summaries = train_stacked(cfgs, dirs, record)
            if {s["status"] for s in summaries} != {status}:
                raise RuntimeError(f"stacked {' '.join(cfg_overrides)} M={m}: {[s['status'] for s in summaries]}")
    return summaries[0]["images_per_s"]


def _process_window(cfg_overrides, seed, steps, device, threads):
    torch.set_num_threads(threads)
    return vae_train_window([*cfg_overrides, f"seed={seed}"], steps, device)


def processes_window(cfg_overrides, m, steps, device):
    """images/s per model of `m` runs as joblib's processes side by side (hydra/launcher=joblib's default n_jobs:
    one per core, each with cores / jobs torch threads), each timed as vae_train_window times it."""
    from joblib import Parallel, delayed

    from vae_lab.runtime.threads import cores

    jobs = min(m, cores())
    rates = Parallel(n_jobs=jobs)(delayed(_process_window)(cfg_overrides, i, steps, device, max(cores() // jobs, 1))
                                  for i in range(m))
    return statistics.mean(rates) * jobs / m  # `jobs` at a time, each at its rate: the images each model gets


def stacked(cfg_overrides, sizes, rounds, steps, device):
    """{M: figures} for a stack of M models against the same M trained one after another (a lone run's images/s
    shared among M models) and against M processes side by side, in images per second per model, paired by round."""
    out = {}
    for _ in range(rounds):
        lone = vae_train_window(cfg_overrides, steps, device)
        for m in sizes:
            # few steps for large stacks (a locatello step of 16 models takes seconds on a CPU)
            n = max(4, steps // m) if m > 1 else steps
            rows = out.setdefault(m, {"stacked": [], "sequential": [], "processes": []})
            rows["stacked"].append(stacked_window(cfg_overrides, m, n, device))
            rows["sequential"].append(lone / m)
            rows["processes"].append(processes_window(cfg_overrides, m, n, device) if m > 1 else lone)
    figures = {}
    for m, rows in out.items():
        med = {k: statistics.median(v) for k, v in rows.items()}
        figures[m] = {"stacked_images_per_s_per_model": med["stacked"],
                      "sequential_images_per_s_per_model": med["sequential"],
                      "processes_images_per_s_per_model": med["processes"],
                      "ratio_vs_sequential": statistics.median(a / b for a, b in zip(rows["stacked"], rows["sequential"])),
                      "ratio_vs_processes": statistics.median(a / b for a, b in zip(rows["stacked"], rows["processes"])),
                      "windows": rounds, "steps": max(4, steps // m) if m > 1 else steps}
    return figures


def stacked_rows(quick, device):
    for name, overrides, steps in (("sprites_default", [], 40), ("locatello", LOCATELLO, 8)):
        for m, figures in stacked(overrides, STACK_SIZES, 1 if quick else 2, steps, device).items():
            yield f"stacked/{name}/M={m}", figures


def microseconds(ways, rounds, device, reps=200, warm=10):
    """Median over `rounds` of the microseconds per call of each function of `ways` (name -> function), taking
    turns within each round."""
    us = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            repeated(fn, warm)()
            _, seconds = timed(repeated(fn, reps), device)
            us[name].append(1e6 * seconds / reps)
    return {name: statistics.median(v) for name, v in us.items()}


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
    return {"dictconfig_read_us": med["dictconfig"] / reads, "namespace_read_us": med["namespace"] / reads,
            "dictconfig_vs_namespace": med["dictconfig"] / med["namespace"]}


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
    return {"scatter_ms": med["scatter"] / 1000, "gather_ms": med["gather"] / 1000,
            "gather_vs_scatter": med["gather"] / med["scatter"]}


def optimizer_step(model, rounds, device, steps=200):
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
            repeated(opt.step, 10)()
            _, seconds = timed(repeated(opt.step, steps), device)
            us[name].append(1e6 * seconds / steps)
    med = {k: statistics.median(v) for k, v in us.items()}
    return {**{f"adam_{k}_us": v for k, v in med.items()}, "fused_speedup": med["default"] / med["fused"]}


def variants(overrides, rounds, steps, device):
    """trainer.precision=bf16 and trainer.compile=true against the plain fp32 eager step, same windows."""
    options = {"fp32_eager": [], "bf16": ["trainer.precision=bf16"], "compile": ["trainer.compile=true"]}
    speeds = {name: [] for name in options}
    for _ in range(rounds):
        for name, extra in options.items():
            speeds[name].append(vae_train_window([*overrides, *extra], steps, device))
    base = statistics.median(speeds["fp32_eager"])
    return {**{f"{n}_images_per_s": statistics.median(v) for n, v in speeds.items()},
            **{f"{n}_vs_fp32_eager": statistics.median(v) / base for n, v in speeds.items() if n != "fp32_eager"}}


def iwae_time(overrides, images, device, k=1000):
    """Seconds for iwae_nll with k samples on `images` test images (an untrained model costs the same), and the
    figure scaled to the whole 10,000-image test split."""
    cfg = config(overrides)
    data = build("dataset", cfg.dataset, device=device)
    model = build_model(cfg, data).to(device).eval()
    x = data.batch("test", torch.arange(images, device=device))
    g = torch.Generator(device=device).manual_seed(0)

    @torch.no_grad()
    def all_images():
        for start in range(0, images, 100):
            iwae_nll(model, x[start : start + 100], k, generator=g)
    _, seconds = timed(all_images, device)
    return {"images": images, "seconds": seconds, "seconds_for_10k_test_images": seconds * data.size("test") / images}


def flops_per_step(overrides, device):
    """FLOPs that torch counts in one of vae-train's training steps (forward, objective, backward) on a batch of 128."""
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as run_dir:
        run = setup(config([*overrides, f"device={device}", "trainer.batch_size=128"]), Path(run_dir))
        with FlopCounterMode(display=False) as counter:
            train_step(run, next(batches(run)))
        run.logbook.close()
    return counter.get_total_flops()


def matmul_peak(device, n=2048, reps=10):
    """FLOP/s of the fastest of `reps` n x n matrix products."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return max(2 * n**3 / timed(lambda: a @ b, device)[1] for _ in range(reps))


def startup(repeats):
    """Seconds from process start to the end of the first training step (and its checkpoint), vs importing torch."""
    def wall(*args):
        return timed(lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True), "cpu")[1]

    with tempfile.TemporaryDirectory() as d:
        torch_s = min(wall(PROBES, "torch_startup") for _ in range(repeats))
        bare_s = min(wall(PROBES, "nothing") for _ in range(repeats))
        first = min(wall("-m", "vae_lab.train", "dataset=fashion_mnist", "trainer.max_steps=2",
                         "trainer.stop_at_step=1", "device=cpu", f"hydra.run.dir={d}/{i}") for i in range(repeats))
    return {"to_first_step_s": first, "torch_startup_s": torch_s - bare_s, "beyond_torch_s": first - torch_s,
            "target_beyond_torch_s": 2.0}


def sprites_memory(device):
    """The sprites grid's resident memory and one epoch's batch assembly, in a fresh process (scripts/probes.py)."""
    out = subprocess.run([sys.executable, PROBES, "sprites_memory", f"--device={device}"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out) | {"target_peak_mb": 600}


def rss_anon_mb():
    """This process's own anonymous resident memory (RssAnon): unlike RSS, without the memory-mapped file's pages that
    the OS caches."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("RssAnon")).split()[1]) / 1024


def evict(path):
    """Drop the file's pages from the OS page cache (posix_fadvise DONTNEED; no root needed for clean pages), so that
    the next read comes from the disk. Pages mapped by a live memory map stay."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def synthetic_mpi3d(folder, n, chunk=8192):
    """An uncompressed MPI3D npz of n random RGB 64x64 images (written a chunk at a time from a memory map), and the
    dataset overrides that read it on a grid of n = 10 x 10 x 10 x n/1000 images (n a multiple of 1,000)."""
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 64, 64, 3))
    for start in range(0, n, chunk):
        images[start : start + chunk] = rng.integers(0, 256, images[start : start + chunk].shape, dtype=np.uint8)
    path = write_npz(folder / "mpi3d_toy.npz", {"images": images}, compress=False)
    del images
    (folder / "images.npy").unlink()
    sizes = [10, 10, 10, n // 1000, 1, 1, 1]
    return ["dataset=mpi3d", f"dataset.path={path}", f"dataset.factor_sizes=[{','.join(map(str, sizes))}]",
            f"data_dir={folder}", "dataset.val_size=0.02", "dataset.test_size=0.02"]


def quartiles(values):
    """(q1, median, q3) of the values; a single value for all three."""
    return tuple(statistics.quantiles(values, n=4)) if len(values) > 1 else tuple(values) * 3


def streaming(n, rounds, steps, device, batch_size=64):
    """A cache of n RGB 64x64 images (n a multiple of 1,000) four times the memory budget: the loader's own images/s
    (dataset.stream, gathering in its threads) from the page cache and, its pages evicted first, from the disk; its
    first batch; vae-train's images/s of locatello_conv with the images streamed and resident, in paired rounds; and
    this process's anonymous memory (RssAnon) while streaming. The cache was just written, so unless the machine is
    short of memory the page cache holds it: the warm loader and training figures are then gathers from memory, the
    case of a cache smaller than the machine's memory after the first epoch; `loader_cold_images_per_s` is the disk.
    On a CPU `resident=true` indexes a tensor over the same memory map, on a GPU a copy held in its memory."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        dataset = synthetic_mpi3d(Path(tmp), n)
        conv = [*dataset, "encoder=locatello_conv", "decoder=locatello_conv", f"trainer.batch_size={batch_size}"]
        # converts into the cache once; the memory map stays on disk, whatever the device
        data = build("dataset", config([*dataset, "dataset.resident=false"]).dataset)
        cache, cache_gb = data.images.filename, data.images.nbytes / 2**30
        budget_gb = cache_gb / 4
        del data
        before = rss_anon_mb()
        streamed = IndexedImageData(np.load(cache, mmap_mode="r"), resident="auto", memory_budget_gb=budget_gb,
                                    device=device)
        order = streamed.epoch_order("train", 0, seed=0)
        index = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        peak = 0.0

        def loader(batches):
            nonlocal peak
            images, stream, started = 0, streamed.stream("train", iter(batches)), time.perf_counter()
            first = len(next(stream))
            first_s = time.perf_counter() - started
            for i, x in enumerate(stream):
                images += len(x)
                if i % 50 == 0:
                    peak = max(peak, rss_anon_mb())
            return first_s, images + first
        (first_s, images), seconds = timed(lambda: loader(index), device)  # an epoch
        streamed.images = None  # the memory map closed, so that its pages can be evicted
        evict(cache)
        streamed.images = np.load(cache, mmap_mode="r")
        cold = index[: max(1, len(index) // 10)]  # a tenth of an epoch: the disk is slow
        (_, cold_images), cold_s = timed(lambda: loader(cold), device)
        windows = {"streamed": [], "resident": []}
        for _ in range(rounds):
            for name, resident in (("streamed", "false"), ("resident", "true")):
                windows[name].append(vae_train_window([*conv, f"dataset.resident={resident}"], steps, device))
    q1, median, q3 = quartiles([a / b for a, b in zip(windows["streamed"], windows["resident"])])
    return {"images": n, "cache_gb": cache_gb, "budget_gb": budget_gb, "resident_decided": streamed.resident,
            "mem_available_gb": available_memory(torch.device("cpu")) / 2**30, "workers": streamed.workers,
            "loader_images_per_s": images / seconds, "loader_first_batch_ms": 1000 * first_s,
            "loader_cold_images_per_s": cold_images / cold_s, "loader_epoch_images": len(index) * batch_size,
            "streamed_train_images_per_s": statistics.median(windows["streamed"]),
            "resident_train_images_per_s": statistics.median(windows["resident"]),
            "paired_streamed_vs_resident": median, "paired_streamed_vs_resident_q1": q1,
            "paired_streamed_vs_resident_q3": q3, "windows": rounds, "steps": steps,
            "rss_anon_mb_before": before, "rss_anon_mb_peak": peak}


def measurements(quick, dev, only=None, streaming_images=500_000):
    """(name, figures) of each measurement in turn; the throughputs first, the slow ones last."""
    # Many short rounds rather than a few long ones: this shared machine drifts by tens of % within a minute.
    rounds, slow_rounds = (3, 2) if quick else (15, 7)  # slow_rounds: the conv models and the compile variant
    yield "machine", {"device": torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({os.cpu_count()} cores)",
                      "torch": torch.__version__, "threads": torch.get_num_threads()}
    if only == "streaming":
        yield "streaming", streaming(streaming_images, 3 if quick else slow_rounds, 10 if quick else 20, dev)
        return
    if only == "stacked":
        yield from stacked_rows(quick, dev)
        return

    cfg = config(MLP)
    data = build("dataset", cfg.dataset, device=dev)
    x_train = data.batch("train", torch.arange(data.size("train"), device=dev))
    with tempfile.TemporaryDirectory() as tmp:
        tv_root = torchvision_root(tmp)
        fig_mlp = throughput(MLP, PlainVAE, in_memory(x_train, flatten=True), dataloader(tv_root, dev, flatten=True),
                             rounds, 100, dev, same_kernels=True)
        yield "throughput/mlp_fashion_mnist", fig_mlp
        yield "optimizer_step/mlp_fashion_mnist", optimizer_step(build_model(cfg, data).to(dev), rounds, dev)
        yield "config_read/trainer.batch_size", config_read(rounds)
        fig_conv = throughput(CONV, PlainConvVAE, in_memory(x_train), dataloader(tv_root, dev), slow_rounds, 20, dev,
                              same_kernels=not quick)
        yield "throughput/conv_keras_tutorial", fig_conv

    sprites = build("dataset", config([]).dataset, device=dev)
    yield "sprites_batch/128", sprites_batch(sprites, rounds, dev)
    fig_sprites = throughput([], lambda: PlainVAE(pixels=4096, latent=10), sprite_batches(sprites, 128, True), None,
                             rounds, 40, dev, same_kernels=False)
    yield "throughput/sprites_default", fig_sprites
    fig_locatello = throughput(LOCATELLO, PlainLocatelloVAE, sprite_batches(sprites, 64, False), None, slow_rounds, 20,
                               dev, same_kernels=not quick)
    yield "throughput/locatello_conv", fig_locatello

    yield from stacked_rows(quick, dev)

    yield "variants/mlp_fashion_mnist", variants(MLP, slow_rounds, 100, dev)
    peak = matmul_peak(dev)
    for name, overrides, fig in (("mlp_fashion_mnist", MLP, fig_mlp), ("conv_keras_tutorial", CONV, fig_conv),
                                 ("sprites_default", [], fig_sprites), ("locatello_conv", LOCATELLO, fig_locatello)):
        flops = flops_per_step(overrides, dev)
        achieved = flops * fig["vae_train_images_per_s"] / 128
        yield f"gflops/{name}", {"gflop_per_step": flops / 1e9, "achieved_gflops": achieved / 1e9,
                                 "matmul_peak_gflops": peak / 1e9, "fraction_of_peak": achieved / peak}

    yield "iwae_k1000/mlp_fashion_mnist", iwae_time(MLP, 500 if quick else 10_000, dev)
    memory = sprites_memory(dev)
    yield "sprites_memory", memory
    step_ms = 1000 * 128 / fig_sprites["vae_train_images_per_s"]
    yield "sprites_data_share", {"assembly_ms_per_batch": memory["ms_per_batch"], "step_ms": step_ms,
                                 "share": memory["ms_per_batch"] / step_ms}
    if dev == "cpu":
        yield "startup", startup(2 if quick else 3)
    yield "streaming", streaming(streaming_images, 3 if quick else slow_rounds, 10 if quick else 20, dev)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter windows (3 to 5 minutes on 2 CPU cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=["streaming", "stacked"], help="only this measurement (and the machine's description)")
    ap.add_argument("--streaming-images", type=int, default=500_000,
                    help="images (a multiple of 1,000) in streaming's synthetic cache: 500,000 take 6.1 GB on /tmp "
                         "twice (the npz and its cache)")
    args = ap.parse_args()
    records = []
    for name, figures in measurements(args.quick, args.device, args.only, args.streaming_images):
        records.append({"measurement": name, **figures})
        print(json.dumps(records[-1]), flush=True)

    print("\n| measurement | figure |\n|---|---|")
    for r in records:
        for k, v in r.items():
            if k != "measurement":
                print(f"| {r['measurement']} {k} | {v:.3g} |" if isinstance(v, float) else f"| {r['measurement']} {k} | {v} |")


if __name__ == "__main__":
    main()
