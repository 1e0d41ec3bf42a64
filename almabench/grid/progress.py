"""The grid's progress as the parent process shows it: a line per finished megabatch and one tqdm bar.

The bar counts training image-passes (epochs × |train_t| of every step's replay set, the count `--dry-run`
gives), so a megabatch of the long end of a replay stream weighs what it costs. Its rate, and so its ETA,
comes from the megabatches finished in this run only: steps a resumed cell had done before count towards
the percentage, not towards the speed. The lines print above the bar (tqdm.write); the bar is drawn only on
a terminal (tqdm's disable=None), so a log file or CI gets the lines alone.

Cells report through `GridProgress.event` (in-process, or through almabench.grid.channel from a worker); the
grid reports each finished cell through `cell_done`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import IO, Any

from tqdm.auto import tqdm

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.stream import REPLAYS, make_stream
from almabench.data import load_dataset
from almabench.grid.specs import describe

FALLBACK_COLUMNS = 80
FALLBACK_ROWS = 24
STEP_KEYS = ("step", "test_accuracy", "density", "seconds", "train_size")  # what an event carries of a step


def step_line(config: RunConfig, step: dict[str, Any]) -> str:
    """One line per finished megabatch: a long cell (hours at the paper's settings) shows its progress."""
    return (f"  {describe(config)} step {step['step']}/{config.megabatches}: accuracy "
            f"{step['test_accuracy']:.2f} %, density {step['density']:.3f} ({step['seconds']:.1f} s)")


def step_passes(config: RunConfig, n_train: int) -> list[int]:
    """Training images each megabatch of the cell processes: epochs × |train| of its replay set."""
    stream = make_stream(config.stream_images or n_train, config.megabatches, 0, config.val_fraction)
    policy = REPLAYS.get(config.replay)
    return [config.epochs * sum(len(stream[i].train) for i in policy(t)) for t in range(1, config.megabatches + 1)]


def stream_note(backend: str, scheduler: str | None, yields_as_done: bool) -> str | None:
    """The one line to say at the start where a backend cannot show everything as it happens."""
    notes = []
    if not yields_as_done:
        notes.append(f"{backend}'s joblib backend hands back every cell's result when the grid ends, so the cells' "
                     f"own lines come then; the bar follows their megabatches")
    if scheduler:
        notes.append("cells on other machines of the cluster send no per-megabatch progress: the bar moves when "
                     "they end")
    return "; ".join(notes) or None


class GridProgress:
    """The parent's view of a running grid: per-megabatch lines and one bar over the image-passes left."""

    def __init__(self, file: IO[str] | None = None, lines: IO[str] | None = None,
                 n_train: Callable[[RunConfig, RunOptions], int] | None = None) -> None:
        self.file = file or sys.stderr  # the bar
        self.lines = lines  # the lines (None: stdout at the time of writing)
        self.n_train = n_train or _n_train
        self.lock = threading.Lock()
        self.bar: tqdm | None = None
        self.configs: dict[str, RunConfig] = {}
        self.passes: dict[str, list[int]] = {}
        self.counted: dict[str, int] = {}
        self.running: set[str] = set()
        self.finished = self.failed = 0

    # -- the grid's side
    def begin(self, todo: Iterable[RunConfig], options: RunOptions, note: str | None = None) -> None:
        """Called once every check has passed, before the first cell runs."""
        for config in todo:
            h = config.hash()
            self.configs[h] = config
            self.passes[h] = step_passes(config, self.n_train(config, options))
            self.counted[h] = 0
        if note:
            self.write(f"note: {note}")
        if self.file is None:  # stderr closed (2>&-): tqdm would die at its first write, before any cell ran
            self.write("note: no progress bar: stderr is closed")
            return
        self.bar = tqdm(total=sum(map(sum, self.passes.values())), unit="img", unit_scale=True, smoothing=0,
                        file=self.file, disable=None, desc="grid", ncols=bar_columns(self.file),
                        nrows=bar_rows(self.file))
        self._postfix()

    def event(self, message: dict[str, Any]) -> None:
        """A cell's message: start, resumed (after k steps) or step (a finished megabatch)."""
        with self.lock:
            h = message["cell"]
            if h not in self.configs:
                return
            if message["kind"] == "start":
                self.running.add(h)
            elif message["kind"] == "resumed":  # done before this run: progress, but not this run's speed
                done = sum(self.passes[h][:message["steps"]])
                self._advance(h, done, earlier=True)
            elif message["kind"] == "step":
                step = message["step"]
                self.write(step_line(self.configs[h], step))
                self._advance(h, self.passes[h][step["step"] - 1])
            self._postfix()

    def cell_done(self, done: dict[str, Any]) -> None:
        """A cell came back: ran (ok or failed), or was left to / finished by another run."""
        with self.lock:
            h = done["config"].hash()
            if h not in self.counted:
                return
            self.running.discard(h)
            left = sum(self.passes[h]) - self.counted.pop(h)
            if done["status"] == "ok":  # steps no message reached us for (another machine): done all the same
                self.finished += 1
                if (bar := self._drawn()) is not None:
                    bar.update(left)
            else:  # failed, busy, or done by another run: that work is not this run's to do
                self.failed += done["status"] == "failed"
                if (bar := self._drawn()) is not None:
                    bar.total -= left
            self._postfix()

    def close(self) -> None:
        if (bar := self._drawn()) is not None:
            bar.refresh()
            bar.close()

    def __enter__(self) -> GridProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output
    def write(self, line: str, err: bool = False) -> None:
        """A line above the bar (or just a line, where there is none); err: on stderr."""
        file = (sys.stderr if err else self.lines or sys.stdout) or sys.stdout or sys.stderr
        if file is None:  # both streams closed: nowhere to say anything
            return
        tqdm.write(line, file=file)
        file.flush()  # tqdm.write does not flush: a later error line on the other stream must come after it

    def _advance(self, h: str, passes: int, earlier: bool = False) -> None:
        """Count passes of a cell still running (a late message of a cell already back counts nothing)."""
        if h not in self.counted:
            return
        self.counted[h] += passes
        if (bar := self._drawn()) is not None:
            if earlier:
                bar.initial += passes  # tqdm's rate is (n - initial) / elapsed with smoothing=0
            bar.update(passes)

    @property
    def shown(self) -> bool:
        """Whether there is a bar to draw (tqdm's disabled bar, off a terminal, keeps no counts)."""
        return self._drawn() is not None

    def _drawn(self) -> tqdm | None:
        """The bar, where there is one to draw (see shown)."""
        return self.bar if self.bar is not None and not self.bar.disable else None

    def _postfix(self) -> None:
        if (bar := self._drawn()) is not None:
            left = len(self.counted) - len(self.running)
            failed = f", {self.failed} failed" if self.failed else ""
            bar.set_postfix_str(f"cells: {self.finished} done, {len(self.running)} running, {left} left{failed}",
                                     refresh=True)


def bar_columns(file: IO[str]) -> int | None:
    """The bar's width: None (tqdm measures the terminal) unless the terminal reports 0 columns, as a
    pseudo-terminal without a size does (`script`): then 80, shutil.get_terminal_size's fallback, rather than a
    bar of no width."""
    try:
        columns = os.get_terminal_size(file.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a terminal (no bar is drawn then), or no file number
        return None
    return FALLBACK_COLUMNS if columns == 0 else None


def bar_rows(file: IO[str]) -> int | None:
    """The terminal's rows for tqdm: None (tqdm measures) unless the terminal reports 0 rows, as one without a size
    does; tqdm then draws no bar at all (it keeps nrows − 1 = −1 lines), so 24, the usual fallback."""
    try:
        rows = os.get_terminal_size(file.fileno()).lines
    except (AttributeError, OSError, ValueError):
        return None
    return FALLBACK_ROWS if rows == 0 else None


def _n_train(config: RunConfig, options: RunOptions) -> int:
    return load_dataset(config.dataset, options.data_root, options.download).n_train
