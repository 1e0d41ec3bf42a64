"""--to parquet: the three tidy tables (analysis.tidy) as cells.parquet, steps.parquet and layers.parquet.

Written by pyarrow through pandas, without the index; the dtypes are tidy's declared ones and come back as
they went in (pandas keeps them in the file's metadata), so `pandas.read_parquet` needs no arguments. Each file
is written as the result files are (a temp file renamed over the name).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from almabench.results.store import write_atomic

from ..tidy import tables_of


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    tables = tables_of(results, root)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("cells", "steps", "layers"):  # a link at the name is replaced, never written through
        write_atomic(dest / f"{name}.parquet", partial(getattr(tables, name).to_parquet, index=False, engine="pyarrow"),
                     dest)
    return (f"cells.parquet ({len(tables.cells)} rows), steps.parquet ({len(tables.steps)} rows), "
            f"layers.parquet ({len(tables.layers)} rows)")
