"""The package's shape is checked with the tests: ruff's lint and mypy (configs in pyproject.toml) must be clean."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["almabench", "analysis", "methods", "benchmarks", "tests"]  # mypy reads the packages ([tool.mypy] files)


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", *LINTED], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    """mypy checks almabench, analysis and methods ([tool.mypy] files); its cache makes a rerun take seconds."""
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
