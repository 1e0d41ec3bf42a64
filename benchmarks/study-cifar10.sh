#!/usr/bin/env bash
# The published CPU study (docs/results.md), in the order its parts were run: every method at seed 0, the paper's
# comparison at seed 1, one seed of the ablation, seed 2, a ladder rung, then more seeds and the long runs. Every
# command resumes, so rerunning this script finishes what is missing and skips what is done. 2 cells at a time,
# 1 torch thread each (the thread count is part of what makes files repeatable: see the README).
set -uo pipefail
OUT=${1:-docs/results}
RUN="almabench run --jobs 2 --threads 1 --spec study-cifar10"
$RUN --methods dense,osp,app,app-released,gmp,rigl,set,imp --seeds 0 --out "$OUT/cifar10-t8"  # all methods, seed 0
$RUN --seeds 1 --out "$OUT/cifar10-t8"                                                # the paper's four, seed 1
$RUN --methods app --pruner magnitude --seeds 0 --out "$OUT/cifar10-t8"               # pruner ablation, seed 0
$RUN --out "$OUT/cifar10-t8"                                                          # the paper's four, seed 2
$RUN --methods dense,osp,app,app-released --epochs 1 --out "$OUT/cifar10-t8"          # ladder rung: 1 epoch
$RUN --methods gmp,rigl,set,imp --out "$OUT/cifar10-t8"                               # baselines, seeds 1-2
$RUN --methods app --pruner magnitude --out "$OUT/cifar10-t8"                         # pruner ablation, seeds 1-2
$RUN --methods dense,osp,app --megabatches 32 --epochs 1 --seeds 0 --out "$OUT/cifar10-t32"  # long stream
$RUN --methods dense,osp,app,app-released --epochs 4 --out "$OUT/cifar10-t8"          # ladder rung: 4 epochs
