"""The numbers of the tables: per block and method, each metric as mean, std, n and a bootstrap interval;
per block, the paper's deltas APP - dense and APP - OSP.

Both tables are long (one row per block, method or comparison, and metric): the CSV is exactly these frames,
and the text, Markdown and LaTeX renderings in render.py only format them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .blocks import iter_blocks
from .paper import BASELINES, headline_for, is_app, method_order
from .stats import bootstrap_diff_ci, ci_high, ci_low


@dataclass(frozen=True)
class Metric:
    """A cell-level column of the tables, with its heading and how many decimals it deserves."""

    column: str
    label: str
    decimals: int


METRICS: tuple[Metric, ...] = (
    Metric("final_test_accuracy", "final acc %", 2),
    Metric("cer", "CER", 0),
    Metric("final_gap", "final gap", 2),
    Metric("mean_gap", "mean gap", 2),
    Metric("final_density", "density", 3),
    Metric("params_kept", "params %", 1),
    Metric("flops_kept", "FLOPs %", 1),
)
# The three the paper quotes as APP - baseline.
DELTA_METRICS: tuple[str, ...] = ("final_test_accuracy", "cer", "final_gap")
METRIC_BY_COLUMN = {m.column: m for m in METRICS}


def summary_table(cells: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Long frame: block keys, method, metric, mean, std (ddof 1), n (seeds), ci_low, ci_high."""
    long = cells.melt(id_vars=[*keys, "method"], value_vars=[m.column for m in METRICS], var_name="metric")
    long["value"] = long["value"].astype(float)
    table = (long.groupby([*keys, "method", "metric"], sort=False, dropna=False)["value"]
             .agg(mean="mean", std="std", n="count", ci_low=ci_low, ci_high=ci_high)
             .reset_index())
    return _ordered(table, keys)


def delta_table(cells: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Long frame: block keys, method (an APP variant), baseline, metric, delta of means, its bootstrap
    interval, the n of each side and, where the block is the paper's headline setting, the paper's delta."""
    rows = []
    for block, block_cells in iter_blocks(cells, keys):
        headline = headline_for(block_cells)
        by_method = {m: g for m, g in block_cells.groupby("method")}
        apps = [m for m in method_order(list(by_method)) if is_app(m)]
        for app in apps:
            for base in (b for b in BASELINES if b in by_method):
                for metric in DELTA_METRICS:
                    a, b = by_method[app][metric].astype(float), by_method[base][metric].astype(float)
                    low, high = bootstrap_diff_ci(a, b)
                    rows.append({**block, "method": app, "baseline": base, "metric": metric,
                                 "delta": a.mean() - b.mean(), "ci_low": low, "ci_high": high,
                                 "n": a.count(), "n_baseline": b.count(),
                                 "paper": headline.deltas.get((base, metric)) if headline else None,
                                 "paper_source": headline.source if headline else None})
    columns = [*keys, "method", "baseline", "metric", "delta", "ci_low", "ci_high", "n", "n_baseline", "paper",
               "paper_source"]
    return pd.DataFrame(rows, columns=columns)


def csv_frame(summary: pd.DataFrame, deltas: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Both tables in one long CSV; `kind` says which, `mean` holds the delta for delta rows."""
    s = summary.assign(kind="summary", baseline=None)
    d = deltas.rename(columns={"delta": "mean"}).assign(kind="delta", std=float("nan"))
    columns = ["kind", *keys, "method", "baseline", "metric", "mean", "std", "n", "n_baseline", "ci_low",
               "ci_high", "paper", "paper_source"]
    return pd.concat([s, d], ignore_index=True).reindex(columns=columns)


def _ordered(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Sort by block, then methods in the paper's order, then metrics in the table's column order."""
    method_rank = {m: i for i, m in enumerate(method_order(table["method"]))}
    metric_rank = {m.column: i for i, m in enumerate(METRICS)}
    return (table.assign(_m=table["method"].map(method_rank), _k=table["metric"].map(metric_rank))
            .sort_values([*keys, "_m", "_k"], kind="stable").drop(columns=["_m", "_k"]).reset_index(drop=True))
