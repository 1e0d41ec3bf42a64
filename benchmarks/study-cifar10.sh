#!/usr/bin/env bash
# The published CPU study (docs/results.md), in the order its parts were run; every command resumes, so rerunning
# this script finishes what is missing and skips what is done. 2 cells at a time, 1 torch thread each (the
# thread count is part of what makes files repeatable: see the README).
set -uo pipefail
OUT=${1:-docs/results}
RUN="almabench run --jobs 2 --threads 1"
$RUN --spec study-cifar10 --out "$OUT/cifar10-t8"                                               # main: 12 cells, 2 epochs
$RUN --spec study-cifar10 --methods app --pruner magnitude --out "$OUT/cifar10-t8"              # ablation: 3 cells
$RUN --spec study-cifar10 --methods dense,osp,app --epochs 1 --out "$OUT/cifar10-t8"            # ladder rung 1 epoch
$RUN --spec study-cifar10 --methods dense,osp,app --megabatches 32 --epochs 1 --seeds 0 --out "$OUT/cifar10-t32"  # long stream
$RUN --spec study-cifar10 --methods dense,osp,app --epochs 4 --out "$OUT/cifar10-t8"            # ladder rung 4 epochs
