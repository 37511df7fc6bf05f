"""A run's logbook: TensorBoard scalars and images, metrics.jsonl and summary.json in its directory, and the reader of
its TensorBoard scalars."""
import json
import math
from pathlib import Path

from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from vae_lab import rundir
from vae_lab.nested import leaves
from vae_lab.rundir import NOT_TRAINED, Status


class Logbook:
    def __init__(self, run_dir, purge_step=None):
        self.dir = Path(run_dir)
        # purge_step drops events at or after it, left by a run that stopped between logging and checkpointing
        self.tb = SummaryWriter(log_dir=str(self.dir), purge_step=purge_step)
        self.metrics_path = self.dir / rundir.METRICS
        if purge_step is not None:  # resuming: the run has no final status until it ends again
            (self.dir / rundir.SUMMARY).unlink(missing_ok=True)
            if self.metrics_path.exists():
                kept = [line for line in self.metrics_path.read_text().splitlines() if _step(line) < purge_step]
                rundir.write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def scalars(self, prefix, values, step):
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(f"{prefix}/{name}", value, step)

    def evaluation(self, prefix, result, step, epoch):
        """measure()'s result as scalars, per-dimension KL, and one line of metrics.jsonl."""
        self.result(prefix, result, step)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"step": step, "epoch": epoch, **rundir.json_safe(result)}) + "\n")

    def evaluation_at(self, step):
        """The result metrics.jsonl holds for `step`, or None."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        found = [json.loads(line) for line in lines if _step(line) == step]
        return {k: v for k, v in found[-1].items() if k not in ("step", "epoch")} if found else None

    def result(self, prefix, result, step):
        """measure()'s result as scalars and per-dimension KL, to TensorBoard only."""
        self.scalars(prefix, result, step)
        for j, v in enumerate(result.get("kl_per_dim", [])):
            self.tb.add_scalar(f"{prefix}_kl_per_dim/z{j}", v, step)

    def plot(self, tag, fig, step, png=None):
        """A matplotlib Figure as a TensorBoard image and, given `png`, a PNG file."""
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        self.tb.add_image(tag, rgb, step, dataformats="HWC")
        if png is not None:
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(png)

    def image_grid(self, tag, images, step, nrow=8, png=None):
        from torchvision.utils import (  # imported here: torchvision slows start-up (bench.py: startup)
            make_grid,
            save_image,
        )

        images = images.detach().float().nan_to_num(0.5).clamp(0, 1).cpu()  # a diverged model's NaN shows grey
        grid = make_grid(images, nrow=nrow, pad_value=0.5)
        self.tb.add_image(tag, grid, step)
        if png is not None:
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, png)

    def summary(self, result, name=rundir.SUMMARY):
        """`result` as JSON in the run directory (summary.json, or eval.json), written atomically."""
        rundir.write_json(self.dir / name, result)

    def flush(self):
        self.tb.flush()

    def hparams(self, cfg, status):
        """The run's config as one session of TensorBoard's HParams tab, written into this run's own event file
        (SummaryWriter.add_hparams would add a sub-run per call). The tab's metrics are the run's own val/* scalars,
        whose last values are the final measurements; no experiment summary is written, so the tab takes the union
        of every run's hyper-parameters instead of one run's."""
        from tensorboard.plugins.hparams.api_pb2 import Status as HParamsStatus
        from torch.utils.tensorboard.summary import hparams

        _, start, end = hparams(flat_hparams(cfg), {})
        kind = "STATUS_SUCCESS" if status == Status.COMPLETED else "STATUS_FAILURE" if status.final else "STATUS_RUNNING"
        end.value[0].metadata.plugin_data.content = _session_end(HParamsStatus.Value(kind))
        self.tb.file_writer.add_summary(start)  # the writer's own events file: one per run, each step logged once
        self.tb.file_writer.add_summary(end)

    def close(self):
        self.tb.flush()
        self.tb.close()


def flat_hparams(cfg):
    """{dotted key: value} of the resolved config; a node with `_target_` shows as its option name (`encoder: mlp`)."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    out = {}

    def into(path, node):  # a group's node shows as its option, then its keys
        if "_target_" in node:
            out[path] = choices.get(path) or str(node["_target_"]).rsplit(".", 1)[-1]
        return True

    for path, value in leaves(OmegaConf.to_container(cfg, resolve=True), into=into):
        if path.rsplit(".", 1)[-1].startswith("_") or path in NOT_TRAINED or value is None:
            continue
        out[path] = value if isinstance(value, (int, float, str)) else str(value)
    return out


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} of every TensorBoard scalar in a run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _session_end(status):
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    return HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=PLUGIN_DATA_VERSION).SerializeToString()


def _step(line):
    """The step of a metrics.jsonl line; a line torn by a kill mid-write counts as after every step."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
