"""The numbers of the tables: per block and method, each metric as mean, std, n and a 95 % interval of the
mean; per block, each APP variant minus every other method, paired by seed, beside the paper's deltas.

Both tables are long (one row per block, method or comparison, and metric): the CSV is exactly these frames,
and the text, Markdown and LaTeX renderings in render.py only format them. Intervals come from stats.py
(t-interval below 20 values, bootstrap from 20 on); `interval` names which one a row got.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .blocks import iter_blocks
from .paper import comparisons, headline_for, method_order
from .stats import mean_interval, paired_differences


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
# The three the paper quotes as APP - baseline, and the gap over the whole stream (the paper's gap figure).
DELTA_METRICS: tuple[str, ...] = ("final_test_accuracy", "cer", "final_gap", "mean_gap")
METRIC_BY_COLUMN = {m.column: m for m in METRICS}


def summary_table(cells: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Long frame: block keys, method, metric, mean, std (ddof 1), n (cells), ci_low, ci_high, interval."""
    long = cells.melt(id_vars=[*keys, "method"], value_vars=[m.column for m in METRICS], var_name="metric")
    long["value"] = long["value"].astype(float)
    table = (long.groupby([*keys, "method", "metric"], sort=False, dropna=False)["value"]
             .agg(mean="mean", std="std", n="count", ci_low=lambda v: mean_interval(v).low,
                  ci_high=lambda v: mean_interval(v).high, interval=lambda v: mean_interval(v).kind)
             .reset_index())
    return _ordered(table, keys)


DELTA_COLUMNS = ("method", "baseline", "metric", "delta", "ci_low", "ci_high", "interval", "n_pairs", "n",
                 "n_baseline", "paper", "paper_source", "identical")


def identical_results(x: pd.DataFrame | None, y: pd.DataFrame | None) -> bool:
    """Whether two methods' cells (their per-seed metrics, seed-indexed) are one computation: at every seed both
    ran, every metric of the tables is equal to the last bit (app and osp at τ = 1, where APP's schedule is 0.8
    at every megabatch: it prunes once before megabatch 1, as OSP does). Their zero deltas then say nothing about
    the methods."""
    if x is None or y is None:
        return False
    common = x.index.intersection(y.index)
    return len(common) > 0 and bool((x.loc[common] == y.loc[common]).all().all())


SAME_COMPUTATION = "same computation (identical results at every seed)"  # the words of tables and figures


def identical_pairs(deltas: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, baseline) of each comparison the delta table marks `identical` (identical_results): the figures
    read this off the table, so that they say "same computation" exactly where the tables do."""
    if deltas.empty or "identical" not in deltas:
        return []
    same = deltas[deltas["identical"].astype(bool)]
    return list(dict.fromkeys(zip(same["method"], same["baseline"])))


def delta_table(cells: pd.DataFrame, keys: Sequence[str], references: Sequence[str] = ()) -> pd.DataFrame:
    """Long frame, one row per block, (APP variant, baseline) of paper.comparisons and metric (each reference
    against every other method instead, where references are given: `report --reference`).

    Cells of one seed share the stream and the initialisation, so a delta is paired by seed: delta is the
    mean over the seeds both methods ran of d_s = A_s - B_s, with the interval of that mean (stats.mean_interval:
    a t-interval with n_pairs - 1 degrees of freedom below 20 pairs). Several cells of one method and seed
    (warned about by blocks.check_homogeneous) are averaged into one value first. n and n_baseline count each
    side's seeds, so n_pairs < n says seeds were left out. `paper` is the published delta where the block is
    the paper's headline setting; `identical` says the two methods' cells gave the same results at every paired
    seed (identical_results).
    """
    rows = []
    for block, block_cells in iter_blocks(cells, keys):
        headline = headline_for(block_cells)
        every = block_cells.groupby(["method", "seed"])[[m.column for m in METRICS]].mean()
        # each method's rows once: looking a method up in the MultiIndex per comparison and metric dominated
        # the report of a sweep (a hundred blocks, thousands of lookups)
        by_method = {method: rows.droplevel("method") for method, rows in every.groupby(level="method", sort=False)}
        for app, base in comparisons(block_cells["method"], references):
            same = identical_results(by_method.get(app), by_method.get(base))
            for metric in DELTA_METRICS:
                a, b = by_method[app][metric].dropna(), by_method[base][metric].dropna()
                d = paired_differences(a, b)
                interval = mean_interval(d)
                rows.append({**block, "method": app, "baseline": base, "metric": metric,
                             "delta": d.mean() if len(d) else float("nan"), "ci_low": interval.low,
                             "ci_high": interval.high, "interval": interval.kind, "n_pairs": len(d),
                             "n": len(a), "n_baseline": len(b),
                             "paper": headline.deltas.get((base, metric)) if headline else None,
                             "paper_source": headline.source if headline else None, "identical": same})
    return pd.DataFrame(rows, columns=[*keys, *DELTA_COLUMNS])


def csv_frame(summary: pd.DataFrame, deltas: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Both tables in one long CSV; `kind` says which, `mean` holds the delta for delta rows."""
    s = summary.assign(kind="summary", baseline=None)
    d = deltas.rename(columns={"delta": "mean"}).assign(kind="delta", std=float("nan"))
    columns = ["kind", *keys, "method", "baseline", "metric", "mean", "std", "n", "n_baseline", "n_pairs",
               "ci_low", "ci_high", "interval", "paper", "paper_source", "identical"]
    return spreadsheet_safe(pd.concat([s, d], ignore_index=True).reindex(columns=columns))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula (OWASP)


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """frame with every text cell that a spreadsheet would run as a formula (a method named =HYPERLINK(...))
    prefixed with a quote, as OWASP advises for CSV: the name reads as written and nothing is evaluated.
    Numbers are left alone (a negative delta is a number, not text)."""
    def safe(value: object) -> object:
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value

    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype)]  # object or str
    return frame.assign(**{c: frame[c].map(safe) for c in text})


def _ordered(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Sort by block, then methods in the paper's order, then metrics in the table's column order."""
    method_rank = {m: i for i, m in enumerate(method_order(table["method"]))}
    metric_rank = {m.column: i for i, m in enumerate(METRICS)}
    return (table.assign(_m=table["method"].map(method_rank), _k=table["metric"].map(metric_rank))
            .sort_values([*keys, "_m", "_k"], kind="stable").drop(columns=["_m", "_k"]).reset_index(drop=True))
