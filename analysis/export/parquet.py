"""--to parquet: the three tidy tables (analysis.tidy) as cells.parquet, steps.parquet and layers.parquet.

Written by pyarrow through pandas, without the index; the dtypes are tidy's declared ones and come back as
they went in (pandas keeps them in the file's metadata), so `pandas.read_parquet` needs no arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tidy import tables_of


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    tables = tables_of(results, root)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("cells", "steps", "layers"):
        getattr(tables, name).to_parquet(dest / f"{name}.parquet", index=False, engine="pyarrow")
    return (f"cells.parquet ({len(tables.cells)} rows), steps.parquet ({len(tables.steps)} rows), "
            f"layers.parquet ({len(tables.layers)} rows)")
