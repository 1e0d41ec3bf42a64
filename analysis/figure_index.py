"""figures/README.md: every figure of a report, listed by study folder, each with a one-line caption of what it
shows and how to read it, so that a folder of a hundred files can be browsed without opening them one by one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .figure_files import Plot

# What each kind of figure draws, and what to look at first (its caption in the index).
CAPTIONS: dict[str, str] = {
    "forest": "every paired delta (app − X, X − dense) with its 95 % t-interval, blocks side by side on one "
              "x-scale per row: an interval clear of 0 is a difference the seeds agree on",
    "accuracy": "test accuracy after each megabatch, a panel per method against dense (black, grey band) on one "
                "y-scale, each titled with its final mean and difference to dense",
    "gap": "generalisation gap (train − validation accuracy) after each megabatch, a panel per method against "
           "dense (black, grey band) on one y-scale, each titled with its final mean and difference to dense",
    "gap_difference": "one seed a method: each method's gap minus dense's per megabatch (hollow, no interval), the "
                      "second half's mean in the title beside the megabatch-to-megabatch sd it is to be read against",
    "density": "each method's density after each megabatch, the target schedules dashed above the lines",
    "cer": "cumulative error (CER) per method, sorted, mean ± std with its difference to dense: lower is a better "
           "anytime learner",
    "paired": "per-megabatch paired differences by seed, one panel per comparison, one y-scale per group",
    "layer_density": "the density of every prunable layer after each megabatch, a panel per method on one colour "
                     "scale: read across a row of panels to compare which layers the methods empty",
    "gap_vs_T": "final and mean generalisation gap at each number of megabatches T, a point per method",
    "accuracy_vs_density": "final test accuracy and mean gap against final density, a point per method and τ",
    "regime": "the regime map: APP's paired differences against dense's mean generalisation gap, rung by rung",
    "regime-vs-dense": "each method − dense against dense's mean generalisation gap, rung by rung",
}


def figure_index(plots: Sequence[Plot], figures: Path) -> str:
    """The Markdown index of the plots under `figures` (their folder): a section per study folder (the figures
    folder itself first), a line per figure: its file, its caption and its block."""
    sections: dict[str, list[str]] = {}
    for plot in plots:
        image = next((p for p in plot.paths if p.suffix in (".png", ".svg")), plot.paths[0])
        link = image.relative_to(figures).as_posix()
        folder = image.parent.relative_to(figures).as_posix()
        caption = CAPTIONS.get(plot.kind, plot.kind)
        sections.setdefault(folder, []).append(f"- [{image.name}]({link}): {caption} ({plot.title})")
    lines = ["# Figures", "", f"{len(plots)} figures, each in every format asked for (same name, another suffix)"
             + ("; the study folders hold the figures of one results folder's blocks, this folder those that span "
                "several." if set(sections) - {"."} else "."), ""]
    if set(sections) == {"."}:  # one study: a flat folder, one list
        return "\n".join([*lines, *sections["."], ""])
    for folder in sorted(sections, key=lambda f: (f != ".", f)):
        lines += [f"## {'across studies' if folder == '.' else folder}", "", *sections[folder], ""]
    return "\n".join(lines)
