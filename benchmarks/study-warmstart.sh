#!/usr/bin/env bash
# The warm-start controls beside APP (docs/results.md, "Warm-start remedies"; issue 36): scratch and shrink-perturb at
# seeds 0-2 in the three rungs whose dense, osp and app cells are committed, with each rung's own recipe (nothing
# tuned): 10,000 images × 16 epochs, then the overfitting rung (5,000 × 32), then the 2-epoch full stream. Seed by
# seed within a rung, so a study cut short holds whole seeds. Every command resumes: rerunning this script finishes
# what is missing and skips what is done. 1 torch thread per cell, JOBS cells at a time (default 2). Ran from a
# worktree at commit 9f568b0, whose dense, osp and app step records on digits (T = 4) are identical to those of
# 8f7501d, b597fce and f614c42, the commits the three rungs' cells ran from (benchmarks/same_steps.py).
set -uo pipefail
OUT=${1:-docs/results}
RUN="almabench run --jobs ${JOBS:-2} --threads 1 --methods scratch,shrink-perturb"
for seed in 0 1 2; do $RUN --spec study-regime --seeds $seed --out "$OUT/cifar10-t8-mid"; done       # 10,000 × 16
for seed in 0 1 2; do $RUN --spec study-overfit --seeds $seed --out "$OUT/cifar10-t8-overfit"; done  # 5,000 × 32
for seed in 0 1 2; do $RUN --spec study-cifar10 --seeds $seed --out "$OUT/cifar10-t8"; done          # 50,000 × 2
