"""Which figures a report draws (`almabench report --figures`): named sets of figure kinds, and single kinds.

A sweep of 20 settings has a hundred blocks, and every figure kind drawn per block is a hundred figures. By
default the report draws what a reader of any block needs: the forest plot (every paired delta of every block
with its 95 % interval, four blocks to a figure) and each block's accuracy and gap curves (the context, and the
paper's subject; a block of one seed a method adds the gap's difference from dense, as it has no interval to
show), plus the cross-block figures (gap over T, accuracy against density, the regime maps). The paired
differences per megabatch (where each delta of the forest comes from: a panel per comparison, as costly to draw
as three curve figures), the CER points, the density schedules and the per-layer densities (one figure per
block, a panel per method: as costly as the forest plot with a dozen methods) are drawn with `--figures all` or
by naming them (`--figures default,paired`).

Past SWEEP_BLOCKS blocks (a sweep: 20 settings of a 4-block study are 80 blocks) `default` leaves the per-block
curves out too: 160 curve figures are a folder nobody pages through, and they were two thirds of such a
report's time. The forest plots still show every block's paired deltas; naming the curves draws them
(`--figures default,accuracy,gap,gap_difference`).
"""

from __future__ import annotations

from almabench.errors import AlmabenchError

# Every kind a report can draw, in the order make_plots draws them (Plot.kind).
KINDS: tuple[str, ...] = ("forest", "accuracy", "gap", "gap_difference", "density", "cer", "paired", "layer_density",
                          "gap_vs_T", "accuracy_vs_density", "regime", "regime-vs-dense")
FIGURE_SETS: dict[str, frozenset[str]] = {
    "all": frozenset(KINDS),
    "default": frozenset({"forest", "accuracy", "gap", "gap_difference", "gap_vs_T", "accuracy_vs_density", "regime",
                          "regime-vs-dense"}),
    "none": frozenset(),
}
ALIASES = {"layers": "layer_density"}  # the per-layer figures' files are layers_*
# Seconds one figure of a kind took in PNG and PDF on a 2-core EPYC (a 14-method block): the pool hands out the
# costly ones first (figure_pool.render).
COSTS: dict[str, float] = {"layer_density": 2.7, "forest": 2.2, "paired": 1.9, "regime": 1.2, "regime-vs-dense": 1.2,
                           "gap_vs_T": 1.0, "accuracy_vs_density": 1.0, "density": 0.56, "gap_difference": 0.53,
                           "gap": 0.42, "cer": 0.42, "accuracy": 0.42}  # accuracy: the gap's small multiples


SWEEP_BLOCKS = 16  # more blocks than this: `default` draws no per-block curves
PER_BLOCK_CURVES = frozenset({"accuracy", "gap", "gap_difference"})


def figure_kinds(spec: str, blocks: int = 0) -> frozenset[str]:
    """The kinds a --figures value names: a comma list of set names (all, default, none) and kinds, united;
    `default` without the per-block curves where the report has more than SWEEP_BLOCKS blocks."""
    kinds: set[str] = set()
    for word in (w.strip() for w in spec.split(",")):
        if not word:
            continue
        word = ALIASES.get(word, word)
        if word == "default" and blocks > SWEEP_BLOCKS:
            kinds |= FIGURE_SETS[word] - PER_BLOCK_CURVES
        elif word in FIGURE_SETS:
            kinds |= FIGURE_SETS[word]
        elif word in KINDS:
            kinds.add(word)
        else:
            raise AlmabenchError(f"unknown --figures {word!r}; choose sets ({', '.join(FIGURE_SETS)}) or kinds "
                                 f"({', '.join(sorted({*KINDS, *ALIASES}))}), comma-separated")
    return frozenset(kinds)


def left_out(spec: str, blocks: int) -> str:
    """The line saying which per-block curves `default` left out of a sweep-sized report, and how to draw them;
    '' where it left none out."""
    dropped = sorted((PER_BLOCK_CURVES - figure_kinds(spec, blocks)) & figure_kinds(spec))
    if not dropped:
        return ""
    named = ", ".join(dropped[:-1]) + f" and {dropped[-1]}" if len(dropped) > 1 else dropped[0]
    return (f"{blocks} blocks: the per-block {named} figures are not drawn past {SWEEP_BLOCKS} blocks "
            f"(the forest plots show every block's deltas); --figures default,{','.join(dropped)} draws them")
