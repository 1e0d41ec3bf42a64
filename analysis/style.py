"""One look per method in every figure: a hue, a marker and a dash pattern that never change with the set of
methods a figure happens to hold. The paper's methods (dense, osp, app, app-released) are drawn solid, the
baselines (gmp, rigl, set, imp) dashed; app is green and no other method is near it (osp, gmp and imp were
three oranges around it when colours followed the order of the methods present)."""

from __future__ import annotations

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
_OTHERS = [MethodStyle(c, m, DOTTED) for c, m in zip((_CB[3], _CB[6], _CB[8]), ("h", "p", "d"))]


def style(method: str) -> MethodStyle:
    """The method's look; a method added later gets a dotted one picked by its name, the same every time, and a
    method at another scope ('rigl (erk-dense-first)') its own method's colour and marker, dotted."""
    if method in STYLES:
        return STYLES[method]
    base = base_method(method)
    if base != method and base in STYLES:
        return MethodStyle(STYLES[base].colour, STYLES[base].marker, DOTTED)
    return _OTHERS[sum(method.encode()) % len(_OTHERS)]


def line_kwargs(method: str) -> dict:
    """Keyword arguments of Axes.plot for the method's line."""
    s = style(method)
    return {"color": s.colour, "marker": s.marker, "linestyle": s.linestyle}
