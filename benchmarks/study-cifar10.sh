#!/usr/bin/env bash
# The published CPU study (docs/results.md), in the order its parts were run: every method at seed 0, the paper's
# comparison at seed 1, one seed of the ablation, seed 2, the 1-epoch ladder rung, the long stream, the baselines'
# seeds 1-2, the 4-epoch rung, then the ablation's seeds 1-2 and app-released on the ladder. Every command resumes,
# so rerunning this script finishes what is missing and skips what is done. 1 torch thread per cell (the thread
# count is part of what makes files repeatable: see the README), JOBS cells at a time (default 2). Two copies with
# JOBS=1 into the same folder share the cells through their locks and keep both cores busy where a line has an odd
# number of cells left. The baselines' lines pin --set scope=global (but the last line): the study ran rigl and set with the global
# scope, before their own default became ERK with a dense first layer (the other methods' scope is global either way).
set -uo pipefail
OUT=${1:-docs/results}
RUN="almabench run --jobs ${JOBS:-2} --threads 1 --spec study-cifar10"
$RUN --methods dense,osp,app,app-released,gmp,rigl,set,imp --seeds 0 --set scope=global --out "$OUT/cifar10-t8"  # all, seed 0
$RUN --seeds 1 --out "$OUT/cifar10-t8"                                                # the paper's four, seed 1
$RUN --methods app --pruner magnitude --seeds 0 --out "$OUT/cifar10-t8"               # pruner ablation, seed 0
$RUN --out "$OUT/cifar10-t8"                                                          # the paper's four, seed 2
$RUN --methods dense,osp,app --epochs 1 --out "$OUT/cifar10-t8"                       # ladder rung: 1 epoch
$RUN --methods app,dense,osp --megabatches 32 --epochs 1 --seeds 0 --out "$OUT/cifar10-t32"  # long stream
$RUN --methods gmp,rigl,set,imp --set scope=global --out "$OUT/cifar10-t8"            # baselines, seeds 1-2
$RUN --methods dense,osp,app --epochs 4 --out "$OUT/cifar10-t8"                       # ladder rung: 4 epochs
$RUN --methods app --pruner magnitude --out "$OUT/cifar10-t8"                         # pruner ablation, seeds 1-2
$RUN --methods app-released --epochs 1 --out "$OUT/cifar10-t8"                        # ladder rung: 1 epoch, released
$RUN --methods app-released --epochs 4 --out "$OUT/cifar10-t8"                        # ladder rung: 4 epochs, released
$RUN --methods rigl,set --out "$OUT/cifar10-t8"                                       # baselines as their authors run them (erk-dense-first), seeds 0-2 (not run yet)
