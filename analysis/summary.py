"""The terminal's overview of a report with many blocks: one line per block, warnings once each.

A sweep's report holds a hundred blocks; their full tables (tables.md, .csv, .tex) run to thousands of lines
that scroll past unread, and each block's warnings repeat word for word but for the block's name. The overview
gives each block one line (its settings, n, the headline paired delta with its 95 % interval, its warnings in a
word each); where even that is too long, the blocks that differ only in the most varied key (the swept setting)
share a line with the range of their deltas. A warning that recurs across blocks is printed once, with the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .blocks import block_label
from .render import BlockTables, _interval_text, _num

MAX_LINES = 40  # block lines: beyond this the blocks of one sweep share a line
HEADLINE_METRIC = "final_test_accuracy"
# A warning's one word in the overview: the first tag whose phrase the message holds (registry, in order).
WARNING_TAGS: tuple[tuple[str, str], ...] = (
    ("mixed-code", "computed by different code"),
    ("mixed-env", "averages cells run with different"),
    ("mixed-config", "differ beyond the seed"),
    ("shared-seed", "share seed"),
    ("plugin-code", "plugin code"),
    ("mixed-data", "data"),
)


def warning_tag(message: str) -> str:
    """The one word that names a warning's kind in a block's line ('warning' for a kind not registered)."""
    return next((tag for tag, phrase in WARNING_TAGS if phrase in message), "warning")


@dataclass(frozen=True)
class BlockWarning:
    """A warning split into the block it names (None: not about one block) and the rest of its text."""

    label: str | None
    rest: str


def split_warning(message: str, labels: Sequence[str]) -> BlockWarning:
    """message as (its block's label, the text after it): the longest label it starts with, followed by ', ' or
    ': ' as blocks.check_* write them."""
    for label in sorted(labels, key=len, reverse=True):
        if message.startswith(label) and message[len(label):len(label) + 2] in (", ", ": "):
            return BlockWarning(label, message[len(label) + 2:])
    return BlockWarning(None, message)


def grouped_warnings(messages: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Each distinct warning once, in first-seen order: one about several blocks with their count in front
    ('in 20 blocks: dense: averages ...'), the block named where it is one block's alone."""
    groups: dict[str, list[str]] = {}
    for message in messages:
        split = split_warning(message, labels)
        groups.setdefault(split.rest if split.label is not None else message, []).append(message)
    lines = []
    for rest, members in groups.items():
        lines.append(f"in {len(members)} blocks: {rest}" if len(members) > 1 else members[0])
    return lines


def _n_text(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _headline(rows: pd.DataFrame) -> pd.Series | None:
    """A block's first paired delta in final accuracy (app - dense by default), or None without one."""
    rows = rows[(rows["metric"] == HEADLINE_METRIC) & rows["delta"].notna()] if not rows.empty else rows
    return rows.iloc[0] if len(rows) else None


def _delta_text(row: pd.Series | None) -> str:
    if row is None:
        return "-"
    return f"{row['method']} - {row['baseline']} {_num(row['delta'], 2, True)} {_interval_text(row, 2)}"


@dataclass(frozen=True)
class BlockLine:
    """One block's overview entry."""

    block: dict[str, object]
    n: list[int]
    headline: pd.Series | None
    tags: tuple[str, ...]


def block_lines(tables: Sequence[BlockTables], deltas: pd.DataFrame, keys: Sequence[str],
                messages: Sequence[str]) -> list[BlockLine]:
    """Each block's entry: its seed counts per method, its headline delta and the tags of its warnings."""
    labels = [t.label for t in tables]
    tags: dict[str, list[str]] = {}
    for message in messages:
        split = split_warning(message, labels)
        if split.label is not None:
            tags.setdefault(split.label, []).append(warning_tag(split.rest))
    by_block = {tuple(map(str, b)): rows for b, rows in deltas.groupby(list(keys), sort=False, dropna=False)} \
        if not deltas.empty else {}
    lines = []
    for t in tables:
        rows = by_block.get(tuple(str(t.block[k]) for k in keys), pd.DataFrame())
        lines.append(BlockLine(t.block, [int(n) for n in t.methods["n"]], _headline(rows),
                               tuple(dict.fromkeys(tags.get(t.label, [])))))
    return lines


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]


def _swept_key(lines: Sequence[BlockLine], keys: Sequence[str]) -> str | None:
    """The block key with the most distinct values (the swept setting), if it takes more than one."""
    counts = {k: len({str(line.block[k]) for line in lines}) for k in keys}
    key = max(keys, key=lambda k: counts[k], default=None)
    return key if key is not None and counts[key] > 1 else None


def _range_text(rows: Sequence[BlockLine]) -> str:
    """The spread of a sweep's headline deltas: 'app - dense -0.42 to +1.10 (lowest CI low -1.8, ...)'."""
    heads = [r.headline for r in rows if r.headline is not None]
    if not heads:
        return "-"
    values = [float(h["delta"]) for h in heads]
    names = {f"{h['method']} - {h['baseline']}" for h in heads}
    name = names.pop() if len(names) == 1 else "headline deltas"
    low = [float(h["ci_low"]) for h in heads if not math.isnan(float(h["ci_low"]))]
    high = [float(h["ci_high"]) for h in heads if not math.isnan(float(h["ci_high"]))]
    text = f"{name} {_num(min(values), 2, True)} to {_num(max(values), 2, True)}"
    if low and high:
        text += f", intervals within [{_num(min(low), 2, True)}, {_num(max(high), 2, True)}]"
    return text


def overview(lines: Sequence[BlockLine], keys: Sequence[str], max_lines: int | None = None) -> list[str]:
    """The block lines, or, past max_lines (MAX_LINES), one line per sweep (blocks alike but in the swept key)."""
    head = ["block", "n", "final accuracy: headline paired delta [95 % CI]", "warnings"]
    swept = _swept_key(lines, keys) if len(lines) > (MAX_LINES if max_lines is None else max_lines) else None
    if swept is None:
        body = [[block_label(b.block), _n_text(b.n), _delta_text(b.headline), ", ".join(b.tags) or "-"]
                for b in lines]
        return _table([head, *body])
    sweeps: dict[tuple[str, ...], list[BlockLine]] = {}
    for b in lines:
        sweeps.setdefault(tuple(str(b.block[k]) for k in keys if k != swept), []).append(b)
    body = []
    for rows in sweeps.values():
        values = [str(r.block[swept]) for r in rows]
        block = {k: (f"{values[0]}..{values[-1]} ({len(rows)} blocks)" if k == swept else v)
                 for k, v in rows[0].block.items()}
        tags = dict.fromkeys(t for r in rows for t in r.tags)
        body.append([block_label(block), _n_text([n for r in rows for n in r.n]), _range_text(rows),
                     ", ".join(tags) or "-"])
    head[2] = "final accuracy: headline paired delta, lowest to highest"
    return [f"{len(lines)} blocks, one line per {swept} sweep:", *_table([head, *body])]


def summary_text(tables: Sequence[BlockTables], deltas: pd.DataFrame, keys: Sequence[str],
                 messages: Sequence[str], out: str, max_lines: int | None = None) -> str:
    """The terminal overview: the block lines and where the full tables went (the warnings: grouped_warnings)."""
    lines = overview(block_lines(tables, deltas, keys, messages), keys, max_lines)
    warned = f"; {len(messages)} warnings, all in report.md" if messages else ""
    return "\n".join([f"{len(tables)} blocks (n: seeds per method); full tables: {out}/tables.md, tables.csv, "
                      f"tables.tex{warned}", *lines]) + "\n"
