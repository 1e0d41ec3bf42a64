"""almabench.analysis: result files -> tables, figures and report.md (`almabench report RESULTS_DIR`).

Modules, one job each: load (files -> one frame, a row per cell and step), tidy (files -> typed tables of
cells, steps and layers), export (those in other tools' formats), blocks (which cells are compared), stats (t-intervals,
paired differences), tables (the numbers), render (text/Markdown/LaTeX), plots (figures), paired and forest (the
figures of the differences: per megabatch, and the tables' deltas), report (the folder), cli (the command).
The main names are re-exported lazily so that importing the CLI does not pull in pandas or matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_results": ".load", "filter_results": ".load", "cells": ".load", "layer_densities": ".load",
    "load_tables": ".tidy", "ResultTables": ".tidy",
    "summary_table": ".tables", "delta_table": ".tables", "make_plots": ".plots", "build_report": ".report",
    "report": ".cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
