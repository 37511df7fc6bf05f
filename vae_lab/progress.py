"""Progress bars with the time left, on stderr: one helper for training, evaluation and the metrics."""
import sys

from tqdm import tqdm


def bar(total, desc, unit="it", enabled=True, initial=0, unit_scale=False):
    """A tqdm bar over `total` units (a silent one when not `enabled`); use as a context manager and update()."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def over(starts, total, step, desc, unit="image", enabled=True):
    """The items of `starts` (offsets 0, step, 2 step, ... below total), counting `step` units per item on a bar."""
    if not enabled:
        yield from starts
        return
    with bar(total, desc, unit) as b:
        for start in starts:
            yield start
            b.update(min(step, total - start))
