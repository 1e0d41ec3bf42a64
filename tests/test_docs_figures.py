"""docs/figures holds exactly the figures benchmarks/docs_figures.py copies from a report over docs/results, each
shown on docs/results.md, and a docs figure's pattern picks one report figure or stops with its name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_figures", REPO / "benchmarks" / "docs_figures.py")
assert _spec is not None and _spec.loader is not None
docs_figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs_figures)


def test_docs_figures_are_exactly_the_copied_ones_and_each_is_on_the_results_page():
    assert sorted(p.name for p in (REPO / "docs" / "figures").glob("*.png")) == sorted(docs_figures.FIGURES)
    page = (REPO / "docs" / "results.md").read_text()
    assert [name for name in docs_figures.FIGURES if f"(figures/{name})" not in page] == []


def test_a_pattern_picks_one_report_figure_or_stops_naming_what_it_found(tmp_path: Path):
    study = tmp_path / "cifar10-t8"
    study.mkdir()
    for name in ("gap_a_epochs2_x.png", "gap_a_epochs4_x.png", "forest_a.png"):
        (study / name).write_bytes(b"")
    assert docs_figures.source(tmp_path, "cifar10-t8", "gap_*_epochs4_*.png").name == "gap_a_epochs4_x.png"
    with pytest.raises(SystemExit, match=r"gap_\*.png: 2 figures match, not 1"):
        docs_figures.source(tmp_path, "cifar10-t8", "gap_*.png")
    with pytest.raises(SystemExit, match="0 figures match"):
        docs_figures.source(tmp_path, "", "regime_*.png")
