"""SIGINT and SIGTERM (Ctrl-C; what Slurm sends before pre-emption) ask the loop to stop after its current step."""
import logging
import signal
import sys
import threading

log = logging.getLogger("vae_lab")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Within `with StopRequest() as stop:`, the first signal sets `stop.signal` (its name) and training goes on to
    finish the step and write a checkpoint; a second one exits at once. The previous handlers come back on exit."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signal is not None:
            print(f"vae-train: second {name}: exiting at once; the last checkpoint written stays valid",
                  file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        self.signal = name
        log.warning("%s: finishing this step and writing a checkpoint (send it again to exit at once)", name)

    @property
    def exit_code(self):
        """The shell's convention for a process ended by this signal: 128 + its number."""
        return 128 + signal.Signals[self.signal].value
