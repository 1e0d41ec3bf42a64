"""Where a report's figures go: one FigureWriter per report names each figure uniquely, a FigureJob is one
figure planned in the report's process and drawn wherever figure_pool runs it, and save_figure writes it in every
format through the results store's atomic, link-refusing write."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.layout_engine import PlaceHolderLayoutEngine  # noqa: E402

from almabench.names import cut_bytes  # noqa: E402
from almabench.results.store import write_atomic  # noqa: E402

from .figure_kit import report_style  # noqa: E402
from .figure_sets import COSTS  # noqa: E402

FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class Plot:
    """One figure written to disk in one or more formats."""

    kind: str
    title: str
    paths: tuple[Path, ...]


@dataclass
class FigureWriter:
    """Saves every figure of one report, each under a name no other figure of it has.

    Two blocks can slug alike (blocks.block_slug hashes lossy names, but a user may still pick colliding ones);
    a second figure must then get its own file, or the report would count it and link to the first one's.
    Names are compared case-folded: on macOS and Windows `App.png` overwrites `app.png`.
    """

    out: Path
    formats: Sequence[str]
    taken: set[str] = field(default_factory=set)

    def unique(self, name: str) -> str:
        """name, or name-2, name-3, ... if an earlier figure of this report already has it."""
        candidate, i = name, 1
        while candidate.casefold() in self.taken:
            i += 1
            candidate = f"{name}-{i}"
        self.taken.add(candidate.casefold())
        return candidate

    def save(self, fig: plt.Figure, name: str) -> tuple[Path, ...]:
        """Write fig in every format under a unique name and close it."""
        return save_figure(fig, self.out, self.unique(name), self.formats)

    def job(self, kind: str, title: str, name: str, draw: Callable[..., plt.Figure], *args: Any,
            folder: str = "") -> FigureJob:
        """A figure to draw later (FigureJob.render), its unique name taken now: names follow the order the
        jobs are planned in, whichever process draws them and in whatever order. folder: the study's subfolder
        (study_folder), "" for the figures folder itself."""
        return FigureJob(kind, title, self.unique(name), draw, args, self.out / folder if folder else self.out,
                         tuple(self.formats))


def study_folder(rows: pd.DataFrame, several: bool) -> str:
    """The subfolder of figures/ a figure of these rows goes into: the results folder (study) its cells' files
    lie in, where the report spans several studies and these rows lie in one; "" otherwise (one study: no
    subfolder; rows across studies: the figures folder itself)."""
    if not several or "path" not in rows.columns:
        return ""
    studies = {Path(p).parent.name for p in rows["path"].dropna().unique()}
    return cut_bytes(re.sub(r"[^\w.+-]+", "-", studies.pop()).strip("-.") or "study", 100) if len(studies) == 1 \
        else ""


def several_studies(rows: pd.DataFrame) -> bool:
    """Whether the rows' files lie in more than one results folder (a report over docs/results)."""
    return "path" in rows.columns and rows["path"].map(lambda p: str(Path(p).parent)).nunique() > 1


def fix_layout(fig: plt.Figure) -> None:
    """Solve the figure's layout (constrained) once and keep it: savefig draws a figure twice per format (once
    to measure the tight bounding box), and re-solving the layout at every draw was a fifth of a report's drawing
    time. Positions are in figure fractions, so the solution holds at any format's dpi."""
    engine = fig.get_layout_engine()
    if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine):
        engine.execute(fig)
        fig.set_layout_engine("none")


def save_figure(fig: plt.Figure, out: Path, name: str, formats: Sequence[str]) -> tuple[Path, ...]:
    """Write fig as out/name.FORMAT for every format and close it."""
    fix_layout(fig)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        metadata = {"Software": None} if fmt == "png" else None  # a link at path is replaced, not written through
        # the report folder is the root: a figures/ that leads out of it is one line, nothing written
        save = partial(fig.savefig, format=fmt, bbox_inches="tight", metadata=metadata)
        write_atomic(path, save, out.parent)
        paths.append(path)
    plt.close(fig)
    return tuple(paths)


@dataclass(frozen=True)
class FigureJob:
    """One figure of a report, planned in the report's process and drawn wherever render runs (a worker of
    figure_pool, or here): draw(*args) makes it, in the report's style, saved as out/name.FORMAT."""

    kind: str
    title: str
    name: str
    draw: Callable[..., plt.Figure]
    args: tuple[Any, ...]
    out: Path
    formats: tuple[str, ...]

    @property
    def cost(self) -> float:
        """Its kind's rough drawing time (figure_sets.COSTS), to hand out costly figures first."""
        return COSTS.get(self.kind, 1.0)

    def render(self) -> Plot:
        """Draw and save the figure; its Plot."""
        with report_style():
            return Plot(self.kind, self.title, save_figure(self.draw(*self.args), self.out, self.name, self.formats))
