"""One look per method in every figure: a hue, a marker and a dash pattern that never change with the set of
methods a figure happens to hold. The paper's methods (dense, osp, app, app-released) are drawn solid, the
baselines (gmp, rigl, set, imp) and the warm-start controls (scratch, shrink-perturb) dashed; app is green and no
other method is near it (osp, gmp and imp were three oranges around it when colours followed the order of the
methods present). A plugin's colour keeps a contrast of at least 3:1 against the white background (WCAG's rule
for graphics), so a pale yellow never draws a user's own method."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import seaborn as sns

from .paper import base_method

_CB = sns.color_palette("colorblind", 10)  # blue, orange, green, red, purple, brown, pink, grey, yellow, cyan
SOLID, DASHED, DOTTED = "-", (0, (4, 2)), (0, (1, 1.5))
_DARK = sns.color_palette("dark", 10)


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
    "scratch": MethodStyle(_CB[3], "<", DASHED),
    "shrink-perturb": MethodStyle(_DARK[6], ">", DASHED),
}
# A method from a plugin (almabench.extend.plugins) draws one of each from these by a hash of its name: none is a
# built-in's marker or dashes, and the colours are dark shades no built-in wears (red, ochre, teal, violet), each at
# a contrast of 3:1 or more against white.
PLUGIN_COLOURS = (_DARK[3], _DARK[8], _DARK[9], _DARK[4])
PLUGIN_MARKERS = ("h", "p", "d", "H", "8")
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


def contrast_on_white(colour: tuple[float, float, float]) -> float:
    """WCAG's contrast ratio of an sRGB colour (0-1 channels) against white: 1 (white) to 21 (black)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour)
    return 1.05 / (0.2126 * r + 0.7152 * g + 0.0722 * b + 0.05)


def line_kwargs(method: str) -> dict:
    """Keyword arguments of Axes.plot for the method's line."""
    s = style(method)
    return {"color": s.colour, "marker": s.marker, "linestyle": s.linestyle}
