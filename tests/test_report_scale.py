"""The report at the size of a sweep: `--figures` draws exactly the kinds it names, `--jobs` changes nothing in
what is written, and the terminal summary gives one line per block and each repeated warning once."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_analysis import write_result

from almabench.analysis import figure_pool
from almabench.analysis.cli import report
from almabench.analysis.figure_sets import FIGURE_SETS, KINDS, figure_kinds
from almabench.analysis.summary import grouped_warnings, split_warning, warning_tag
from almabench.errors import AlmabenchError

SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # lr: six blocks, one per setting


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Six blocks (lr 0.1 ... 0.6), each 2 seeds of dense and app with known numbers: app - dense is +10 points
    in final accuracy at every seed (errors 30 vs 40 of 100) in every block. Dense's seed 1 ran at other code
    than the rest everywhere, so every block warns alike twice (dense's row mixes code, and a paired delta)."""
    root = tmp_path / "results"
    root.mkdir()
    for lr in SWEEP:
        for seed in (0, 1):
            code = {"code": "other" if seed == 1 else "main"}
            write_result(root, "dense", seed, [40, 40], 5.0, lr=lr, megabatches=2, env=code)
            write_result(root, "app", seed, [30, 30], 3.0, 0.5, lr=lr, megabatches=2, env={"code": "main"})
    return root


def invoke(*args: str) -> tuple[str, str]:
    result = CliRunner().invoke(report, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_figure_sets_name_the_kinds_and_refuse_unknown_words() -> None:
    assert figure_kinds("default") == FIGURE_SETS["default"]
    assert figure_kinds("all") == frozenset(KINDS)
    assert figure_kinds("none") == frozenset()
    assert figure_kinds("default,cer,layers") == FIGURE_SETS["default"] | {"cer", "layer_density"}
    assert figure_kinds("forest") == {"forest"}
    assert "paired" not in FIGURE_SETS["default"] and {"forest", "regime"} <= FIGURE_SETS["default"]
    with pytest.raises(AlmabenchError, match="unknown --figures 'curves'"):
        figure_kinds("default,curves")


def test_default_leaves_the_per_block_curves_out_of_a_sweep_and_says_how_to_draw_them() -> None:
    from almabench.analysis.figure_sets import PER_BLOCK_CURVES, SWEEP_BLOCKS, left_out

    assert figure_kinds("default", SWEEP_BLOCKS) == FIGURE_SETS["default"]  # up to SWEEP_BLOCKS: all of it
    assert figure_kinds("default", SWEEP_BLOCKS + 1) == FIGURE_SETS["default"] - PER_BLOCK_CURVES
    assert figure_kinds("default,gap", SWEEP_BLOCKS + 1) == FIGURE_SETS["default"] - {"accuracy", "gap_difference"}
    assert figure_kinds("all", 1000) == frozenset(KINDS) and figure_kinds("accuracy", 1000) == {"accuracy"}
    assert left_out("default", SWEEP_BLOCKS) == "" and left_out("all", 1000) == ""
    assert left_out("default,gap", 17) == (f"17 blocks: the per-block accuracy and gap_difference figures are not "
                                           f"drawn past {SWEEP_BLOCKS} blocks (the forest plots show every block's "
                                           f"deltas); --figures default,accuracy,gap_difference draws them")
    assert left_out("default,gap,gap_difference", 17).startswith("17 blocks: the per-block accuracy figures are")


def test_a_sweep_sized_report_draws_no_curves_by_default_and_says_so(sweep: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from almabench.analysis import figure_sets

    monkeypatch.setattr(figure_sets, "SWEEP_BLOCKS", len(SWEEP) - 1)  # the six-block sweep counts as a sweep
    stdout, _ = invoke(str(sweep), "--out", str(tmp_path / "out"), "--format", "png", "--jobs", "1")
    kinds = {p.name.split("_")[0] for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert kinds == {"forest"}  # the default's cross-block figures need several T, τ or rungs: none here
    line = "6 blocks: the per-block accuracy, gap and gap_difference figures are not drawn past 5 blocks"
    assert line in stdout and line in (tmp_path / "out" / "report.md").read_text()
    stdout, _ = invoke(str(sweep), "--out", str(tmp_path / "all"), "--format", "png", "--jobs", "1",
                       "--figures", "default,accuracy")
    assert len(list((tmp_path / "all" / "figures").glob("accuracy_*.png"))) == len(SWEEP)
    assert "6 blocks: the per-block gap and gap_difference figures are not drawn past 5 blocks" in stdout


@pytest.mark.parametrize("figures, expected", [
    ("none", set()),
    ("forest", {"forest_digits_convnet_T2"}),
    ("default", {"forest_digits_convnet_T2", "accuracy_digits_convnet_T2_snip_tau4.5",
                 "gap_digits_convnet_T2_snip_tau4.5"}),
    ("default,cer", {"forest_digits_convnet_T2", "accuracy_digits_convnet_T2_snip_tau4.5",
                     "gap_digits_convnet_T2_snip_tau4.5", "cer_digits_convnet_T2_snip_tau4.5"}),
    ("all", {"forest_digits_convnet_T2", "accuracy_digits_convnet_T2_snip_tau4.5",
             "gap_digits_convnet_T2_snip_tau4.5", "cer_digits_convnet_T2_snip_tau4.5",
             "density_digits_convnet_T2_snip_tau4.5", "paired_digits_convnet_T2_snip_tau4.5",
             "layers_digits_convnet_T2_tau4.5"}),
])
def test_figures_writes_exactly_the_kinds_it_names(tmp_path: Path, figures: str, expected: set[str]) -> None:
    (tmp_path / "r").mkdir()
    for seed in (0, 1):
        write_result(tmp_path / "r", "dense", seed, [40, 40], 5.0, dataset="digits", megabatches=2)
        write_result(tmp_path / "r", "app", seed, [30, 30], 3.0, 0.5, dataset="digits", megabatches=2)
    out = tmp_path / "out"
    stdout, _ = invoke(str(tmp_path / "r"), "--out", str(out), "--format", "png,svg", "--figures", figures)
    written = sorted(p.name for p in (out / "figures").glob("*")) if (out / "figures").exists() else []
    index = ["README.md"] if expected else []  # the figures' index (figure_index), where there is a figure
    assert written == sorted([*index, *(f"{stem}.{fmt}" for stem in expected for fmt in ("png", "svg"))])
    assert f"{len(expected)} figures" in stdout
    report_md = (out / "report.md").read_text()
    assert all(f"figures/{stem}.png" in report_md for stem in expected)


def test_an_unknown_figures_word_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    write_result(tmp_path / "r", "dense", 0, [40, 40], 5.0, megabatches=2)
    result = CliRunner().invoke(report, [str(tmp_path / "r"), "--figures", "nope"])
    assert result.exit_code != 0 and "unknown --figures 'nope'" in result.output


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_jobs_write_the_same_files_as_one(sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figure_pool, "POOL_FROM", 2)  # a pool even for this small report
    one, two = tmp_path / "one", tmp_path / "two"
    text_one = invoke(str(sweep), "--out", str(one), "--format", "png,svg", "--figures", "all", "--jobs", "1")
    text_two = invoke(str(sweep), "--out", str(two), "--format", "png,svg", "--figures", "all", "--jobs", "2")
    a, b = _digests(one), _digests(two)
    assert sorted(a) == sorted(b) and len([n for n in a if n.endswith(".png")]) >= 6 * 6
    for name in ("tables.md", "tables.csv", "tables.tex", "report.md"):
        assert a[name] == b[name], name
    assert {n for n in a if n.endswith(".png") and a[n] != b[n]} == set()  # Agg draws alike in any process
    assert [t.replace(str(one), "OUT") for t in text_one] == [t.replace(str(two), "OUT") for t in text_two]


def test_the_pool_returns_results_in_the_jobs_order_whatever_their_costs() -> None:
    class Job:
        def __init__(self, i: int) -> None:
            self.i, self.cost = i, float(i % 3)

        def render(self) -> int:
            return self.i * 10

    jobs = [Job(i) for i in range(20)]
    assert figure_pool.render(jobs, 1) == [i * 10 for i in range(20)]
    assert figure_pool.render(jobs, 2) == [i * 10 for i in range(20)]


def test_summary_gives_one_line_per_block_and_each_repeated_warning_once(sweep: Path, tmp_path: Path) -> None:
    stdout, stderr = invoke(str(sweep), "--out", str(tmp_path / "out"), "--figures", "none")
    lines = stdout.splitlines()
    assert lines[0] == (f"6 blocks (n: seeds per method); full tables: {tmp_path / 'out'}/tables.md, tables.csv, "
                        f"tables.tex; 12 warnings, all in report.md")
    assert lines[1].split() == ["block", "n", "final", "accuracy:", "headline", "paired", "delta", "[95", "%",
                                "CI]", "warnings"]
    rows = lines[2:8]
    assert [r.split()[:12] for r in rows] == [
        ["digits", "/", "convnet", "/", "T=2", "/", "snip", "/", "tau=4.5", "/", f"lr={lr}", "2"] for lr in SWEEP]
    # app - dense: +10 points at both seeds, no spread: the interval is the point
    assert all("app - dense +10.00 [+10.00, +10.00]" in r and r.endswith("mixed-code") for r in rows)
    assert lines[8:] == ["", f"wrote {tmp_path / 'out'}: report.md, tables.md/.csv/.tex, 0 figures (png, pdf)"]
    assert "== " not in stdout  # no block's full table
    warnings = [w for w in stderr.splitlines() if w.startswith("warning:")]
    assert warnings == [
        "warning: in 6 blocks: dense: averages cells computed by different code (environment.code): seed 0 at "
        "main (commit abc); seed 1 at other (commit abc)",
        "warning: in 6 blocks: paired deltas compare cells computed by different code (environment.code): "
        "app - dense at seed 1 (cells: dense seed 1 at other (commit abc); every other cell at main (commit abc))"]
    assert (tmp_path / "out" / "report.md").read_text().count("averages cells computed by different code") == 6


def test_few_blocks_keep_the_full_tables_and_every_warning(sweep: Path, tmp_path: Path) -> None:
    stdout, stderr = invoke(str(sweep), "--out", str(tmp_path / "out"), "--figures", "none", "--terminal", "tables")
    assert stdout.count("== digits / convnet / T=2 / snip / tau=4.5 / lr=") == 6
    assert len([w for w in stderr.splitlines() if w.startswith("warning:")]) == 12


def test_summary_of_many_blocks_gives_one_line_per_sweep(sweep: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from almabench.analysis import summary

    stdout, _ = invoke(str(sweep), "--out", str(tmp_path / "out"), "--figures", "none")
    assert len(stdout.splitlines()) == 10
    monkeypatch.setattr(summary, "MAX_LINES", 4)  # fewer lines than blocks: the lr sweep shares one line
    stdout, _ = invoke(str(sweep), "--out", str(tmp_path / "out2"), "--figures", "none")
    lines = stdout.splitlines()
    assert lines[1] == "6 blocks, one line per lr sweep:"
    assert "lr=0.1..0.6 (6 blocks)" in lines[3] and "app - dense +10.00 to +10.00" in lines[3]
    assert lines[5].startswith("wrote ")


def test_warning_split_finds_the_longest_block_label() -> None:
    labels = ["a / T=8", "a / T=8 / lr=0.1"]
    assert split_warning("a / T=8 / lr=0.1, dense: x", labels).label == "a / T=8 / lr=0.1"
    assert split_warning("a / T=8: y", labels).rest == "y"
    assert split_warning("cells on different data", labels).label is None
    assert grouped_warnings(["a / T=8: y", "a / T=8 / lr=0.1: y", "z"], labels) == ["in 2 blocks: y", "z"]
    assert warning_tag("averages cells run with different torch threads in [1, 2]") == "mixed-env"
    assert warning_tag("something new") == "warning"


def test_benchmark_synthesises_valid_files_named_by_their_hash(tmp_path: Path) -> None:
    import importlib.util

    from almabench.results.validate import validate_result

    spec = importlib.util.spec_from_file_location("report_scale", Path(__file__).parents[1] / "benchmarks" /
                                                  "report_scale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["report_scale"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    (tmp_path / "study").mkdir()
    write_result(tmp_path / "study", "dense", 0, [40, 40], 5.0, megabatches=2)
    write_result(tmp_path / "study", "app", 0, [30, 30], 3.0, 0.5, megabatches=2)
    assert module.synthesise(tmp_path / "study", tmp_path / "out", 3, 2) == 3 * 2 * 2
    files = sorted((tmp_path / "out").glob("*.json"))
    docs = [json.loads(p.read_text()) for p in files]
    assert len(files) == 12 and all(validate_result(d) is None and d["config_hash"] == p.stem
                                    for d, p in zip(docs, files))
    assert sorted({(d["config"]["lr"], d["config"]["seed"]) for d in docs}) == [
        (lr, seed) for lr in (0.101, 0.102, 0.103) for seed in (0, 1000)]


def test_a_refusal_in_a_worker_is_the_same_one_line(sweep: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A figures/ that links out of the report folder is refused by the worker that writes there: the refusal
    comes back through the pool as the one line it is in the report's own process, and nothing is written."""
    monkeypatch.setattr(figure_pool, "POOL_FROM", 2)
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "figures").symlink_to(victim, target_is_directory=True)
    result = CliRunner().invoke(report, [str(sweep), "--out", str(tmp_path / "out"), "--format", "png",
                                         "--jobs", "2"])
    assert result.exit_code == 1 and "leads outside" in result.output, result.output
    assert "Traceback" not in result.output and list(victim.iterdir()) == []


def test_the_report_and_its_figure_workers_never_import_torch(sweep: Path, tmp_path: Path):
    """torch adds about 600 MB to a process: the report (and every loky worker that unpickles its figure jobs)
    must import none of it, or the report of a sweep holds 1.6 GB instead of 1 GB. Imported and run (a report
    over six blocks, one figure kind) in a fresh interpreter."""
    import subprocess

    code = ("import sys; from click.testing import CliRunner; from almabench.analysis.cli import report; "
            "import almabench.analysis.plots; "
            "r = CliRunner().invoke(report, [*sys.argv[1:], '--figures', 'accuracy', '--jobs', '1']);"
            "print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(sweep), "--out", str(tmp_path / "r")], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[-2:] == ["0", "False"]


def test_a_block_of_one_seed_a_method_adds_the_gap_difference_to_the_default_figures(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    write_result(tmp_path / "r", "dense", 0, [40, 40], 5.0, dataset="digits", megabatches=2)
    write_result(tmp_path / "r", "app", 0, [30, 30], 3.0, 0.5, dataset="digits", megabatches=2)
    out = tmp_path / "out"
    invoke(str(tmp_path / "r"), "--out", str(out), "--format", "png", "--figures", "default")
    assert (out / "figures" / "gap_difference_digits_convnet_T2_snip_tau4.5.png").exists()
