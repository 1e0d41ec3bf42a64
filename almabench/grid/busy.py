"""A hint at start where other work already keeps the machine's cores busy.

torch runs each operation on all its threads and waits for the slowest: a thread whose core another process
holds makes every operation wait (the quick grid's app cell took 736 s at 2 threads beside one busy core, 26 s at
1). The run does not change the thread count it was given; it says so, once, with the flag.
"""

from __future__ import annotations

import math
import os


def busy_hint(threads: int, cores: int | None = None, load: float | None = None) -> str | None:
    """One line where the load leaves fewer free cores than `threads`, the torch threads each cell will use
    (cores: os.cpu_count(); load: the 1-minute load average, os.getloadavg); None where they fit, where one
    thread is all a cell uses, or where the load cannot be read."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not every platform has a load average
            return None
    free = max(0, cores - math.floor(load + 0.5))  # a core busy half the time or more counts as busy
    advice = max(1, free)
    if threads <= advice:
        return None
    return (f"note: the machine's load (a 1-minute average of {load:.1f} on {cores} cores) leaves {free} core(s) "
            f"free for the {threads} torch threads each cell uses; a thread on a busy core makes the others wait "
            f"at every operation, so --threads {advice} may run much faster (this run keeps {threads})")
