"""scripts/bench.py's measurements run: each on a tiny config for a step or two, so a renamed attribute or key
fails here rather than in the first benchmark run on a GPU (how `run.runlog` was found)."""
import os
import sys
from pathlib import Path

import pytest
from helpers import TINY

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # bench.py imports plain_loop from there
_tqdm = os.environ.get("TQDM_DISABLE")
bench = pytest.importorskip("bench")
if _tqdm is None:  # bench.py turns progress bars off for its own process: not for the other tests
    os.environ.pop("TQDM_DISABLE", None)

SMALL = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.log_every", "trainer.eval_every",
                                               "trainer.checkpoint_every"))]


def test_the_training_measurements_run():
    assert bench.vae_train_window(SMALL, 2, "cpu") > 0
    assert bench.flops_per_step(SMALL, "cpu") > 0
    figures = bench.variants(SMALL, 1, 2, "cpu")
    assert set(figures) >= {"fp32_eager_images_per_s", "bf16_vs_fp32_eager", "compile_vs_fp32_eager"}


def test_the_other_measurements_run():
    assert bench.iwae_time(SMALL, 4, "cpu", k=4)["seconds"] > 0
    assert bench.config_read(1, reads=10)
    assert bench.matmul_peak("cpu", n=64, reps=1) > 0


def test_the_streaming_measurement_runs():
    figures = bench.streaming(2000, 1, 1, "cpu", batch_size=16)
    assert figures["resident_decided"] is False and figures["budget_gb"] < figures["cache_gb"]
    assert min(figures[k] for k in ("loader_images_per_s", "loader_cold_images_per_s", "streamed_train_images_per_s",
                                    "resident_train_images_per_s", "rss_anon_mb_peak")) > 0
    assert figures["paired_streamed_vs_resident_q1"] <= figures["paired_streamed_vs_resident"]


def test_the_locatello_conv_row_runs():
    """The locatello_conv row: vae-train's preset against the bare loop's same layers (plain_loop.PlainLocatelloVAE)."""
    small = ["dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "eval.max_images=64"]
    sprites = bench.build("dataset", bench.config(small).dataset)
    assert sum(p.numel() for p in bench.PlainLocatelloVAE().parameters()) == 690_517  # vae-train's locatello model's
    figures = bench.throughput([*bench.LOCATELLO, *small, "trainer.batch_size=8"], bench.PlainLocatelloVAE,
                               bench.sprite_batches(sprites, 8, flatten=False), None, 1, 2, "cpu", same_kernels=True)
    assert figures["paired_ratio_vs_bare"] > 0 and figures["paired_same_kernels_ratio_vs_bare"] > 0


def test_the_stacked_rows_run():
    """stacked/<model>/M=<m>: a stack against one after another and against processes side by side."""
    figures = bench.stacked(SMALL, (1, 2), 1, 2, "cpu")
    assert set(figures) == {1, 2}
    for row in figures.values():
        assert min(row[k] for k in ("stacked_images_per_s_per_model", "sequential_images_per_s_per_model",
                                    "processes_images_per_s_per_model", "ratio_vs_sequential", "ratio_vs_processes")) > 0
