"""SIGINT and SIGTERM (Ctrl-C; what Slurm sends before pre-emption) ask the loop to stop after its current step.

In a joblib sweep the sweep's own process forwards them to its workers (vae_lab.runtime.launcher); the signal it got
is recorded in a SweepSignal, which its workers read."""
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("vae_lab")
SIGNALS = (signal.SIGINT, signal.SIGTERM)

# In a worker process of a joblib sweep: its parent's SweepSignal (set by join_sweep); None in any other process.
sweep_parent = None


class StopRequest:
    """Within `with StopRequest() as stop:`, the first signal sets `stop.signal` (its name) and training goes on to
    finish the step and write a checkpoint; a second one exits at once. The previous handlers come back on exit.

    In a sweep's worker whose parent has been signalled, that signal counts and the copies a worker also gets
    straight (Ctrl-C reaches the terminal's whole process group, Slurm signals every process of a job step) are the
    same request: a second one is the parent's to handle."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self.signal = forwarded_signal()  # set when the sweep was told to stop while this job was starting
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        forwarded = forwarded_signal()
        if self.signal is not None and forwarded is None:
            print(f"vae-train: second {name}: exiting at once; the last checkpoint written stays valid",
                  file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        if self.signal is None:
            self.signal = forwarded or name
            log.warning("%s: finishing this step and writing a checkpoint (send it again to exit at once)", name)

    @property
    def exit_code(self):
        return exit_code(self.signal)


def exit_code(name):
    """The shell's convention for a process ended by the signal `name` (SIGTERM): 128 + its number."""
    return 128 + signal.Signals[name].value


class SweepSignal:
    """A folder named after a joblib sweep's process id, through which that process tells its workers to stop.

    `signal` holds the name of the first SIGINT/SIGTERM the sweep's process got; `workers/<pid>` marks each worker
    that has its handlers installed (join_sweep), so that a signal forwarded to it cannot end it between jobs."""

    def __init__(self, parent_pid):
        self.dir = Path(tempfile.gettempdir()) / f"vae_lab-sweep-{parent_pid}"

    def open(self):
        """In the sweep's process: a fresh folder (one left by an earlier process of the same id goes)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "workers").mkdir(parents=True)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def record(self, name):
        """Written whole, then renamed: a worker reads either nothing or the name."""
        part = self.dir / "signal.part"
        part.write_text(name)
        part.replace(self.dir / "signal")

    @property
    def signal(self):
        try:
            return (self.dir / "signal").read_text() or None
        except FileNotFoundError:
            return None

    def workers(self):
        """Process ids of the workers that joined (they may have ended since)."""
        return {int(p.name) for p in (self.dir / "workers").iterdir()}

    def join(self, pid):
        try:
            (self.dir / "workers" / str(pid)).touch()
        except FileNotFoundError:  # the folder is gone: no sweep process listens for signals any more
            pass


def join_sweep(parent_pid):
    """In a joblib sweep's worker, before each job: install handlers for the worker's life, then say so in the
    parent's SweepSignal (whose folder is new for each batch of jobs it launches). Returns that SweepSignal."""
    global sweep_parent
    if sweep_parent is None:
        sweep_parent = SweepSignal(parent_pid)
        for s in SIGNALS:  # a job's StopRequest takes over within its loop; outside it the parent's record decides
            signal.signal(s, _between_jobs)
    sweep_parent.join(os.getpid())
    return sweep_parent


def _between_jobs(signum, frame):
    """A worker's handler outside a job's training loop: Python's default would end the worker, and joblib would
    then end the whole sweep. The sweep's record is what counts: no job starts after it, and a job setting up when
    the signal came stops after its first step (StopRequest reads the record)."""


def forwarded_signal():
    """The signal the sweep's process got, in one of its workers; None elsewhere, or while it has got none."""
    return sweep_parent.signal if sweep_parent is not None else None
