"""The figures of docs/results.md, redrawn from the committed study folders in one command.

One report over docs/results (every figure kind, PNG) draws each study's figures into figures/<study>/ and the
cross-study ones into figures/; each docs figure is a copy of the one report figure its pattern in FIGURES
matches, so a docs figure is never drawn by other code than `almabench report`, and its name says what it draws:

    python benchmarks/docs_figures.py             # redraw docs/figures/*.png (about 30 s on 2 cores)
    python benchmarks/docs_figures.py --keep DIR  # and keep the whole report in DIR
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
DOCS_FIGURES = REPO / "docs" / "figures"

# docs name -> (the report's figures subfolder, "" for cross-study figures; a glob of the report figure's name)
FIGURES: dict[str, tuple[str, str]] = {
    "cifar10-t8-2epoch-accuracy-per-method.png": ("cifar10-t8", "accuracy_*_snip_tau4.5_*_epochs2_*.png"),
    "cifar10-t8-1epoch-accuracy-per-method.png": ("cifar10-t8", "accuracy_*_snip_tau4.5_*_epochs1_*.png"),
    "cifar10-t8-4epoch-gap-per-method.png": ("cifar10-t8", "gap_cifar10_*_snip_tau4.5_*_epochs4_*.png"),
    "cifar10-t8-2epoch-cer.png": ("cifar10-t8", "cer_*_snip_tau4.5_*_epochs2_*.png"),
    "cifar10-t8-2epoch-layer-density.png": ("cifar10-t8", "layers_*_epochs2_*.png"),
    "cifar10-t8-paired-deltas-forest.png": ("cifar10-t8", "forest_*.png"),
    "cifar10-t32-gap-per-method.png": ("cifar10-t32", "gap_cifar10_*.png"),
    "cifar10-t32-gap-difference-from-dense.png": ("cifar10-t32", "gap_difference_*.png"),
    "cifar10-t8-overfit-gap-per-method.png": ("cifar10-t8-overfit", "gap_cifar10_*_tau4.5_*.png"),
    "cifar10-t8-overfit-paired-differences.png": ("cifar10-t8-overfit", "paired_*_tau4.5_*.png"),
    "cifar10-t8-overfit-paired-deltas-forest.png": ("cifar10-t8-overfit", "forest_*.png"),
    "cifar10-t8-overfit-accuracy-vs-density.png": ("cifar10-t8-overfit", "accuracy_vs_density_*.png"),
    "regime-map.png": ("", "regime_*.png"),
    "regime-vs-dense.png": ("", "regime-vs-dense_*.png"),
}


def source(figures: Path, folder: str, pattern: str) -> Path:
    """The one report figure a docs figure copies; an error naming the pattern where none or several match."""
    found = sorted((figures / folder).glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"{folder}/{pattern}: {len(found)} figures match, not 1: {[p.name for p in found]}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="write the report here and keep it")
    args = parser.parse_args(argv)
    out = args.keep or Path(tempfile.mkdtemp(prefix="docs-figures-"))
    done = subprocess.run([sys.executable, "-m", "almabench.cli", "report", str(RESULTS), "--out", str(out),
                           "--format", "png", "--figures", "all"], capture_output=True, text=True)
    if done.returncode != 0:  # the report's own one-line error; its warnings are the page's business, not this
        raise SystemExit(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the report failed")
    copies = {name: source(out / "figures", *where) for name, where in FIGURES.items()}  # all found, then copy
    for old in DOCS_FIGURES.glob("*.png"):
        if old.name not in FIGURES:
            old.unlink()
    for name, path in copies.items():
        shutil.copyfile(path, DOCS_FIGURES / name)
        print(f"docs/figures/{name} <- {path.relative_to(out)}")
    if args.keep is None:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
