"""The report at the size of a sweep: how `report`, `status`, `export` and `load_results` grow with the settings.

A paper-scale grid has hundreds of settings (an lr sweep, a density sweep, a method at several settings), each a
copy of a study's cells with one value changed. This benchmark makes such folders from a committed study, without
committing anything: N settings (a copy of every file per setting, lr 0.101, 0.102, ...) × M seeds (a copy per
extra seed, seed + 1000·k), each config's hash recomputed through RunConfig so that every file is a valid result
named by its hash. It then times each command for growing N, each side (an almabench install: today's code and
the new one, say) in its own process tree, and prints seconds and peak memory (the summed RSS of the command's
process tree, sampled every 50 ms, so worker processes count) as one table:

    python benchmarks/report_scale.py --settings 5,20,80 \\
        --side "before=/work/venv-base/bin/python" --side "after=.venv/bin/python:--jobs 2"

A side is NAME=PYTHON[:EXTRA REPORT ARGS]; its almabench runs as `PYTHON -m almabench.cli`. --commands picks
among report, status, export and load; --budget skips a side's remaining (larger) N for a command once one run of
it took longer, and the table says "not run" there: nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "docs" / "results" / "cifar10-t8"
COMMANDS = ("report", "status", "export", "load")
LOAD = "import sys; from almabench.analysis.load import load_results; load_results([sys.argv[1]])"


def synthesise(study: Path, out: Path, settings: int, seeds: int = 1) -> int:
    """Write settings × seeds copies of every finished result of study into out (lr 0.1 + 0.001·(i+1) for
    setting i, seed + 1000·k for copy k > 0), each renamed to its config's recomputed hash. Returns the count."""
    from almabench.config import RunConfig

    out.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(p.read_text()) for p in sorted(study.glob("*.json"))]
    docs = [d for d in docs if d.get("status") == "ok"]
    written = 0
    for i in range(settings):
        for k in range(seeds):
            for doc in docs:
                config = {**doc["config"], "lr": round(0.1 + 0.001 * (i + 1), 6),
                          "seed": doc["config"]["seed"] + 1000 * k}
                config_hash = RunConfig.from_dict(config).hash()
                copy = {**doc, "config": config, "config_hash": config_hash}
                (out / f"{config_hash}.json").write_text(json.dumps(copy))
                written += 1
    return written


@dataclass(frozen=True)
class Side:
    """One almabench install under test: its python and the extra arguments its report gets."""

    name: str
    python: str
    report_args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Side:
        name, _, rest = text.partition("=")
        python, _, extra = rest.partition(":")
        return cls(name, python, tuple(shlex.split(extra)))


@dataclass(frozen=True)
class Timing:
    """One command's run: wall seconds, peak summed RSS of its process tree (MB), terminal lines, exit status."""

    seconds: float
    peak_mb: float
    lines: int
    status: int


def _tree_rss(pid: int) -> int:
    """Bytes resident in pid and all its descendants now (psutil; 0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(argv: Sequence[str]) -> Timing:
    """Run argv, sampling its process tree's RSS every 50 ms; its output is counted in lines, not kept."""
    peak = 0
    with tempfile.TemporaryFile() as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        status = proc.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        sink.seek(0)
        lines = sink.read().decode(errors="replace").count("\n")
    return Timing(seconds, peak / 2**20, lines, status)


def command(side: Side, name: str, folder: Path, scratch: Path) -> list[str]:
    """The argv of one command of one side over folder, writing under scratch."""
    cli = [side.python, "-m", "almabench.cli"]
    if name == "report":
        return [*cli, "report", str(folder), "--out", str(scratch / "report"), *side.report_args]
    if name == "status":
        return [*cli, "status", str(folder)]
    if name == "export":
        return [*cli, "export", str(folder), "--to", "parquet", "--dest", str(scratch / "parquet")]
    return [side.python, "-c", LOAD, str(folder)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=STUDY, help="committed study to copy (default: %(default)s)")
    parser.add_argument("--settings", default="5,20,80", help="N values, comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="M: copies per setting at other seeds")
    parser.add_argument("--side", action="append", default=[], help="NAME=PYTHON[:EXTRA REPORT ARGS], repeatable")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"among {', '.join(COMMANDS)}")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds: once a side's command takes longer, its larger N are not run")
    parser.add_argument("--keep", type=Path, default=None, help="write the folders here and keep them")
    parser.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = parser.parse_args(argv)
    try:  # the peak memory column reads each process tree with it; without it every peak read 0 MB, silently
        import psutil  # noqa: F401
    except ImportError:
        parser.error("the peak memory is measured with psutil, which is not installed: pip install psutil")
    sides = [Side.parse(s) for s in args.side] or [Side("this", sys.executable)]
    names = [c for c in args.commands.split(",") if c]
    over: set[tuple[str, str]] = set()
    rows = []
    root = Path(args.keep or tempfile.mkdtemp(prefix="report-scale-"))
    try:
        for n in [int(v) for v in args.settings.split(",")]:
            folder = root / f"n{n}-m{args.seeds}"
            if not folder.exists():
                files = synthesise(args.study, folder, n, args.seeds)
            else:
                files = len(list(folder.glob("*.json")))
            for name in names:
                for side in sides:
                    if (side.name, name) in over:
                        rows.append({"settings": n, "files": files, "command": name, "side": side.name})
                        continue
                    scratch = root / f"out-{side.name}-{name}-{n}"
                    t = timed(command(side, name, folder, scratch))
                    shutil.rmtree(scratch, ignore_errors=True)
                    if t.seconds > args.budget:
                        over.add((side.name, name))
                    rows.append({"settings": n, "files": files, "command": name, "side": side.name,
                                 "seconds": round(t.seconds, 1), "peak_mb": round(t.peak_mb), "lines": t.lines,
                                 "status": t.status})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r.get("status", 0) for r in rows) else 0


def table(rows: list[dict]) -> str:
    """A Markdown table: one row per (settings, command, side), with seconds per setting beside seconds."""
    lines = ["| settings | files | command | side | seconds | s / setting | peak MB | terminal lines |",
             "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"| {r['settings']} | {r['files']:,} | {r['command']} | {r['side']} | not run | | | |")
            continue
        failed = "" if r["status"] == 0 else f" (exit {r['status']})"
        lines.append(f"| {r['settings']} | {r['files']:,} | {r['command']} | {r['side']} | {r['seconds']:.1f}{failed} "
                     f"| {r['seconds'] / r['settings']:.2f} | {r['peak_mb']:,} | {r['lines']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
