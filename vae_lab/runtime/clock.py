"""How long a run trained, and how many images it trained on, with evaluation and checkpoints left out."""
import time
from contextlib import contextmanager


class Clock:
    """Seconds spent training (evaluation and checkpoints are `paused()`) and the images trained in them."""

    def __init__(self):
        self.started = self.since = time.perf_counter()
        self.seconds = self.images = 0.0
        self.lap_seconds = self.lap_images = 0.0

    def count(self, images):
        self.images += images

    @contextmanager
    def paused(self):
        self.seconds += time.perf_counter() - self.since
        yield
        self.since = time.perf_counter()

    def training_seconds(self):
        return self.seconds + time.perf_counter() - self.since

    def lap(self):
        """Images per second of training since the previous lap."""
        seconds, images = self.training_seconds(), self.images
        rate = (images - self.lap_images) / max(seconds - self.lap_seconds, 1e-9)
        self.lap_seconds, self.lap_images = seconds, images
        return rate

    def summary(self):
        seconds = self.training_seconds()
        return {"wall_s": time.perf_counter() - self.started,
                "images_per_s": self.images / seconds if self.images else 0.0}
