#!/usr/bin/env bash
# The regime map's cells (docs/results.md, issue 28), in the order they run: dense at seed 0 in both middle rungs
# (calibration: its mean gap must lie between 4 and 20 points), app at seed 0 in both (the first paired point of
# each rung), then dense, osp and app seed by seed in both, then ResNet-20 on the overfitting rung (dense and app
# seed by seed, then osp), then gmp in the middle rungs. Every command resumes, so rerunning this script finishes
# what is missing and skips what is done. 1 torch thread per cell, JOBS cells at a time (default 2); the two middle
# rungs run side by side, one cell each. A flag that lists seeds or methods puts its axis last in the grid (the
# cells then run method by method), so the lines below name no seeds where they want the spec's seed-first order.
set -uo pipefail
OUT=${1:-docs/results}
RUN="almabench run --jobs ${JOBS:-2} --threads 1"
MID10="--spec study-regime --out $OUT/cifar10-t8-mid"                                  # 10,000 images, 16 epochs
MID20="--spec study-regime --set stream_images=20000 --epochs 8 --out $OUT/cifar10-t8-mid"  # 20,000 images, 8 epochs
RES20="--spec study-overfit --archs resnet20 --out $OUT/cifar10-t8-overfit-resnet20"  # 5,000 images, 32 epochs
$RUN $MID10 --methods dense --seeds 0 & $RUN $MID20 --methods dense --seeds 0 & wait   # calibration, one core each
$RUN $MID10 --methods app --seeds 0 --jobs 1 & $RUN $MID20 --methods app --seeds 0 --jobs 1 & wait
$RUN $MID10 --jobs 1 & $RUN $MID20 --jobs 1 & wait                                     # dense, osp, app, seed by seed
for seed in 0 1 2; do $RUN $RES20 --methods dense,app --seeds $seed; done             # ResNet-20 where dense overfits
$RUN $RES20 --methods osp
$RUN $MID10 --methods gmp & $RUN $MID20 --methods gmp & wait                          # if the budget allows
