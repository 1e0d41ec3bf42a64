"""Formatting of the long tables (tables.py) for people: a terminal table, Markdown and LaTeX, block by block.

Nothing is computed here beyond string formatting, so the three renderings always agree with tables.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .blocks import block_label, iter_blocks
from .tables import METRIC_BY_COLUMN, METRICS, SAME_COMPUTATION

PM = "±"


@dataclass(frozen=True)
class BlockTables:
    """One block's display tables: per-method rows and the APP-vs-baseline deltas (strings only)."""

    label: str
    block: dict[str, object]
    methods: pd.DataFrame
    deltas: pd.DataFrame
    paper_source: str | None


def _num(value: float, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    return text.lstrip("-") if not signed and float(text) == 0 else text


def _mean_std(mean: float, std: float, decimals: int, pm: str) -> str:
    """'mean ± std', or just the mean where one seed leaves the std undefined."""
    if std is None or math.isnan(std):
        return _num(mean, decimals)
    return f"{_num(mean, decimals)} {pm} {_num(std, decimals)}"


def block_tables(summary: pd.DataFrame, deltas: pd.DataFrame, keys: Sequence[str],
                 pm: str = PM) -> list[BlockTables]:
    """The display tables of every block, in block order."""
    out = []
    delta_groups = {tuple(b.values()): rows for b, rows in iter_blocks(deltas, keys)} if not deltas.empty else {}
    for block, rows in iter_blocks(summary, keys):
        methods = []
        for method, mrows in rows.groupby("method", sort=False):
            by_metric = mrows.set_index("metric")
            line = {"method": method, "n": int(by_metric["n"].max())}
            for m in METRICS:
                r = by_metric.loc[m.column]
                line[m.label] = _mean_std(r["mean"], r["std"], m.decimals, pm)
            methods.append(line)
        drows = delta_groups.get(tuple(block.values()), pd.DataFrame())
        out.append(BlockTables(block_label(block), block, pd.DataFrame(methods), _delta_display(drows),
                               _first(drows, "paper_source")))
    return out


def _first(rows: pd.DataFrame, column: str) -> str | None:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
    return str(values.iloc[0]) if len(values) else None


def _interval_text(r: Any, decimals: int) -> str:
    """'[lo, hi]', or why there is none: one pair has no spread, no pair has no delta."""
    if r.n_pairs == 0:
        return "n/a (no common seed)"
    if r.n_pairs == 1:
        return "n/a (1 seed)"
    return f"[{_num(r.ci_low, decimals, True)}, {_num(r.ci_high, decimals, True)}]"


def _pairs_text(r: Any) -> str:
    """'3 paired seeds', plus each side's seed count where unpaired seeds were left out."""
    text = f"{r.n_pairs} paired seed{'' if r.n_pairs == 1 else 's'}"
    if r.n_pairs < max(r.n, r.n_baseline):
        text += f" (of {r.n} vs {r.n_baseline})"
    if r.interval == "bootstrap":
        text += ", bootstrap"
    if getattr(r, "identical", False):
        text += f"; {SAME_COMPUTATION}"
    return text


def _delta_display(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame()
    lines = []
    has_paper = rows["paper"].notna().any()
    for r in rows.itertuples():
        metric = METRIC_BY_COLUMN[r.metric]
        d = metric.decimals
        line = {"comparison": f"{r.method} - {r.baseline}", "metric": metric.label,
                "delta": _num(r.delta, d, signed=True), "95% CI": _interval_text(r, d), "n": _pairs_text(r)}
        if has_paper:
            line["paper"] = _num(r.paper, d, signed=True) if pd.notna(r.paper) else "-"
        lines.append(line)
    return pd.DataFrame(lines)


def regime_display(table: pd.DataFrame, rung_label: Any) -> pd.DataFrame:
    """The regime table (regime.regime_table) for people: one row per architecture, comparison and rung, in
    order of dense's gap, with both differences side by side. rung_label(row) names the rung."""
    if table.empty:
        return pd.DataFrame()
    lines = []
    index = ["arch", "method", "baseline", "dense_gap"]
    for (arch, method, baseline, _), rows in table.groupby(index, sort=False):
        first = rows.iloc[0]
        gap = _mean_std(first["dense_gap"], first["dense_gap_std"], 2, PM)
        line = {"arch": arch, "rung": rung_label(first), "comparison": f"{method} - {baseline}",
                "dense mean gap": f"{gap} ({first['dense_n']})"}
        for r in rows.itertuples():
            name = METRIC_BY_COLUMN[r.metric].label
            line[f"{name} delta"] = _num(r.delta, 2, signed=True)
            line[f"{name} 95% CI"] = _interval_text(r, 2)
        line["n"] = f"{first['n_pairs']} paired seed{'' if first['n_pairs'] == 1 else 's'}"
        lines.append(line)
    return pd.DataFrame(lines)


def trends_display(trends: pd.DataFrame) -> pd.DataFrame:
    """regime.regime_trends for people: the slope per point of dense's gap and where the line meets zero."""
    if trends.empty:
        return pd.DataFrame()
    return pd.DataFrame([{"arch": r.arch, "comparison": f"{r.method} - {r.baseline}",
                          "metric": METRIC_BY_COLUMN[r.metric].label, "rungs": r.rungs,
                          "slope per gap point": _num(r.slope, 3, signed=True),
                          "at gap 0": _num(r.intercept, 2, signed=True),
                          "zero at dense gap": _zero_text(r.zero_at)}
                         for r in trends.itertuples()])


def _zero_text(zero_at: float) -> str:
    """Where a trend line meets zero, or why it does not at any positive gap."""
    if math.isnan(zero_at):
        return "- (flat)"
    return _num(zero_at, 1) if zero_at > 0 else "none at a positive gap"


LABEL_COLUMNS = ("method", "comparison", "metric", "config_hash", "fingerprint", "file", "arch", "rung")


def aligned(frame: pd.DataFrame) -> str:
    """Columns padded to their widest entry: names left-aligned, numbers right-aligned."""
    cols = list(frame.columns)
    cells = [cols] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) if c in LABEL_COLUMNS else v.rjust(w) for v, w, c in zip(r, widths, cols))
             for r in cells]
    return "\n".join(line.rstrip() for line in lines)


DELTA_NOTE = ("Deltas are paired by seed (cells of one seed share the stream and the initialisation): the mean "
              "over the seeds both methods ran of A - B, with a 95 % t-interval mean ± t(0.975, n-1) · sd / √n "
              "over the n paired seeds (n - 1 degrees of freedom; none for one seed; a percentile bootstrap over "
              "the pairs from 20 on). Seeds only one method ran are left out.")


def to_text(tables: list[BlockTables]) -> str:
    """Aligned plain-text tables for the terminal."""
    parts = [f"mean {PM} std over seeds (n); gap = train - val accuracy in points; params/FLOPs % kept",
             "deltas: A - B paired by seed, mean and 95 % t-interval over the paired seeds (see tables.md)"]
    for t in tables:
        parts.append(f"== {t.label} ==")
        parts.append(aligned(t.methods))
        if not t.deltas.empty:
            parts.append("")
            parts.append(aligned(t.deltas))
            if t.paper_source:
                parts.append(f"paper: {t.paper_source}")
        parts.append("")
    return "\n".join(parts)


def _numeric(column: pd.Series) -> bool:
    """True if every entry reads as a number (possibly signed, bracketed or with a ± part) or is blank."""
    return column.astype(str).str.fullmatch(r"[-+\[]?\d.*|-|nan|None|").all()


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency): numbers right-aligned, text left."""
    cols = list(frame.columns)
    head = "| " + " | ".join(cols) + " |"
    rule = "|" + "|".join("---:" if _numeric(frame[c]) and c not in LABEL_COLUMNS else ":---" for c in cols) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def to_markdown(tables: list[BlockTables], level: int = 2) -> str:
    """Markdown: a heading, the method table and the delta table for each block."""
    notes = (f"Each entry is the mean {PM} sample std over seeds (n seeds); 95 % intervals of each mean "
             f"(t-intervals, bootstrap from 20 seeds on) are in tables.csv. {DELTA_NOTE}")
    parts = [notes, ""]
    for t in tables:
        parts += [f"{'#' * level} {t.label}", "", markdown_table(t.methods), ""]
        if not t.deltas.empty:
            parts += [markdown_table(t.deltas), ""]
            if t.paper_source:
                parts += [f"`paper` column: {t.paper_source}.", ""]
    return "\n".join(parts)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX tabular; ± becomes $\\pm$."""
    escaped = "".join(LATEX_SPECIALS.get(c, c) for c in str(text))
    return escaped.replace(PM, r"$\pm$")


def _tex(frame: pd.DataFrame, caption: str) -> str:
    cols = list(frame.columns)
    spec = "".join("l" if c in LABEL_COLUMNS else "r" for c in cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def to_latex(tables: list[BlockTables]) -> str:
    """LaTeX tables (booktabs) to \\input into a paper: one per block, plus one for its deltas."""
    parts = ["% almabench report: mean $\\pm$ sample std over seeds; needs \\usepackage{booktabs}", ""]
    for t in tables:
        parts.append(_tex(t.methods, t.label))
        if not t.deltas.empty:
            caption = (f"{t.label}: APP minus each other method, paired by seed (mean of per-seed differences, "
                       "95% t-interval over the paired seeds)")
            if t.paper_source:
                caption += f"; paper column: {t.paper_source}"
            parts.append(_tex(t.deltas, caption))
    return "\n".join(parts)
