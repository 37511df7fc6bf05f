"""What scripts/bench.py measures in a fresh process, so that nothing the benchmark has imported or allocated counts:

  python scripts/probes.py nothing                        # the interpreter's own start-up, the baseline
  python scripts/probes.py torch_startup                  # torch's: the import and the first optimizer
  python scripts/probes.py sprites_memory [--device cpu]  # the sprites grid's memory and one epoch of its batches

Each probe imports what it measures inside its function: the others' imports would count. sprites_memory prints
its figures as one JSON object.
"""
import argparse
import json


def nothing(device):
    """Python's start-up and this file's: what the start-up figures are measured from."""


def torch_startup(device):
    """torch's own start-up: the import, plus torch._dynamo, which torch imports lazily when the first optimizer is
    built (torch/_compile.py); every PyTorch training script pays it."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def peak_rss_mb():
    """Peak resident set of this process (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def sprites_memory(device):
    """Peak resident memory after importing torch, after building the sprites grid and after one epoch of batches
    of 128, and the time to assemble that epoch."""
    from plain_loop import timed

    from vae_lab.data.sprites import Sprites

    base = peak_rss_mb()
    data = Sprites(device=device)
    built = peak_rss_mb()
    order = data.epoch_order("train", 0, 0)
    starts = range(0, data.size("train"), 128)

    def epoch():
        x = None
        for i in starts:
            x = data.batch("train", order[i : i + 128])  # held until the next is made, as a training loop holds it
        return x

    _, seconds = timed(epoch, device)
    print(json.dumps({"torch_import_rss_mb": base, "after_build_rss_mb": built, "peak_rss_one_epoch_mb": peak_rss_mb(),
                      "epoch_assembly_s": seconds, "ms_per_batch": 1000 * seconds / len(starts)}))


PROBES = {"nothing": nothing, "torch_startup": torch_startup, "sprites_memory": sprites_memory}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", choices=PROBES)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    PROBES[args.probe](args.device)
