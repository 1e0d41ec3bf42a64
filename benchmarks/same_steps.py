"""Do two results folders hold the same computation? Compares the step records of the cells the two folders share
(matched by file name, i.e. config hash), timing fields aside, and prints one line per cell.

Used before pairing new cells with committed ones made by an older commit (issue 36) and to prove a refactor
changes no number (issue 39). Run the same grid from each commit into its own folder, then compare:

    almabench run --methods dense,osp,app --megabatches 4 --threads 1 --out /tmp/old   # from the old commit
    almabench run --methods dense,osp,app --megabatches 4 --threads 1 --out /tmp/new   # from this one
    python benchmarks/same_steps.py /tmp/old /tmp/new

Exits 1 if any shared cell differs or the folders share no cell.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from almabench.results.store import TIMING_STEP_KEYS


def step_records(path: Path) -> list[dict]:
    return [{k: v for k, v in s.items() if k not in TIMING_STEP_KEYS} for s in json.loads(path.read_text())["steps"]]


def compare(old: Path, new: Path) -> list[tuple[str, str, bool]]:
    """(file, method, identical) for every result file name both folders hold."""
    rows = []
    for path in sorted(old.glob("*.json")):
        other = new / path.name
        if other.is_file():
            method = json.loads(path.read_text())["config"]["method"]
            rows.append((path.name, method, step_records(path) == step_records(other)))
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python benchmarks/same_steps.py OLD_RESULTS NEW_RESULTS", file=sys.stderr)
        return 2
    rows = compare(Path(argv[0]), Path(argv[1]))
    for name, method, same in rows:
        print(f"{name}  {method:14} {'identical' if same else 'DIFFERENT'} step records (timing fields aside)")
    if not rows:
        print("the two folders share no result file", file=sys.stderr)
    return 0 if rows and all(same for *_, same in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
