"""One look per method in every figure: a hue, a marker and a dash pattern that never change with the set of
methods a figure happens to hold. The paper's methods (dense, osp, app, app-released) are drawn solid, the
baselines (gmp, rigl, set, imp) dashed; app is green and no other method is near it (osp, gmp and imp were
three oranges around it when colours followed the order of the methods present)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import seaborn as sns

from .paper import base_method

_CB = sns.color_palette("colorblind", 10)  # blue, orange, green, red, purple, brown, pink, grey, yellow, cyan
SOLID, DASHED, DOTTED = "-", (0, (4, 2)), (0, (1, 1.5))


@dataclass(frozen=True)
class MethodStyle:
    colour: tuple[float, float, float]
    marker: str
    linestyle: str | tuple


STYLES: dict[str, MethodStyle] = {
    "dense": MethodStyle((0.1, 0.1, 0.1), "s", SOLID),
    "osp": MethodStyle(_CB[0], "^", SOLID),
    "app": MethodStyle(_CB[2], "o", SOLID),
    "app-released": MethodStyle(_CB[4], "D", SOLID),
    "gmp": MethodStyle(_CB[1], "v", DASHED),
    "rigl": MethodStyle(_CB[9], "P", DASHED),
    "set": MethodStyle(_CB[5], "X", DASHED),
    "imp": MethodStyle(_CB[7], "*", DASHED),
}
# A method from a plugin (almabench.plugins) draws one of each from these by a hash of its name: none is a
# built-in's marker or dashes, and the colours are those no built-in wears (red, pink, yellow, in two shades).
_DARK = sns.color_palette("dark", 10)
PLUGIN_COLOURS = (_CB[3], _CB[6], _CB[8], _DARK[3], _DARK[6], _DARK[8])
PLUGIN_MARKERS = ("h", "p", "d", "<", ">", "H", "8")
PLUGIN_DASHES = ((0, (6, 1.5, 1, 1.5)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (2, 2, 6, 2)), (0, (1, 3)))


def style(method: str) -> MethodStyle:
    """The method's look; a method at another scope ('rigl (erk-dense-first)') gets its own method's colour and
    marker, dotted, and any other (a plugin's) a colour, a marker and dashes picked by a hash of its name: the
    same in every figure and every run, and unlike every built-in's."""
    if method in STYLES:
        return STYLES[method]
    base = base_method(method)
    if base != method and base in STYLES:
        return MethodStyle(STYLES[base].colour, STYLES[base].marker, DOTTED)
    h = int.from_bytes(hashlib.sha256(method.encode()).digest()[:8], "big")
    colours, markers = len(PLUGIN_COLOURS), len(PLUGIN_MARKERS)
    return MethodStyle(PLUGIN_COLOURS[h % colours], PLUGIN_MARKERS[h // colours % markers],
                       PLUGIN_DASHES[h // colours // markers % len(PLUGIN_DASHES)])


def line_kwargs(method: str) -> dict:
    """Keyword arguments of Axes.plot for the method's line."""
    s = style(method)
    return {"color": s.colour, "marker": s.marker, "linestyle": s.linestyle}
