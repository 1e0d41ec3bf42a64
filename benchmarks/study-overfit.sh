#!/usr/bin/env bash
# The overfitting rung of the CPU study (docs/results.md, issue 21), in the order its parts run: dense, osp, app and
# gmp at seed 0 with app-released, then seeds 1 and 2, rigl and set as their authors run them (their default scope,
# erk-dense-first) at seed 0, the density sweep (app and osp at τ = 10.3, final density 0.100, then τ = 1, final
# density 0.8), and rigl and set at seeds 1-2. Every command resumes, so rerunning this script finishes what is
# missing and skips what is done. 1 torch thread per cell, JOBS cells at a time (default 2).
set -uo pipefail
OUT=${1:-docs/results/cifar10-t8-overfit}
SPEC=${SPEC:-study-overfit}
RUN="almabench run --jobs ${JOBS:-2} --threads 1 --spec $SPEC --out $OUT"
$RUN --seeds 0                                      # the rung at seed 0 (dense, osp, app, gmp)
$RUN --methods app-released --seeds 0               # the released code's pruning, seed 0
$RUN --seeds 1,2                                    # the rung at seeds 1-2
$RUN --methods rigl,set --seeds 0                   # RigL and SET with ERK and a dense first layer, seed 0
$RUN --methods app,osp --tau 10.3                   # the density sweep: far sparser, seeds 0-2
$RUN --methods app,osp --tau 1                      # and milder
$RUN --methods rigl,set --seeds 1,2                 # RigL and SET, seeds 1-2
