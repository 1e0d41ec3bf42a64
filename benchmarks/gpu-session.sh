#!/usr/bin/env bash
# What a session lent one GPU runs, in one call: device time is short (15 minutes), so every stage is bounded.
#   1. speed.py: the SGD step of ResNet-18 at batch 64 (its rate sizes stage 2; SPEED_MODELS=resnet18,resnet50
#      and SPEED_BATCHES=64,1024 give README's whole table, which took about 110 s on 2026-11-26);
#   2. the GPU rung of the CIFAR-10 study (docs/results.md): ResNet-18, T = 8, SNIP, tau = 4.5, full replay,
#      dense / osp / app / app-released at seed 0, side by side on the GPU, with as many epochs per megabatch
#      as the time left allows at the rate stage 1 measured (EPOCHS=N fixes them); a cell cut off by the
#      deadline leaves the records of its finished megabatches in ARTIFACTS/partial.json (from its checkpoint).
# Needs `almabench` on PATH and CIFAR-10 under DATA_ROOT; where DATA_ROOT has none, it is built from a copy of
# ../shared/data carried in .device/data (../shared does not travel to the device machine).
# usage: benchmarks/gpu-session.sh SECONDS ARTIFACTS DATA_ROOT [STUDY_OUT]
# The device call (`run`, carry [".device"], timeout_s 590; its machine started in about 30 s on 2026-11-26):
#   export PATH=$(python3 -c 'import sys; print(sys.prefix)')/bin:$PATH PYTHONUNBUFFERED=1
#   python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . && \
#   bash benchmarks/gpu-session.sh 540 $OUT/a /tmp/data 2>&1 | tee $OUT/log.txt
set -uo pipefail
budget=$1 art=$2 data=$3 study=${4:-docs/results/cifar10-t8-resnet18}
mkdir -p "$art" "$study"
nvidia-smi > "$art/nvidia-smi.txt" 2>&1
[ -d "$data/cifar-10-batches-py" ] || python3 .device/data/build-cifar10.py "$data"

timeout 150 python3 benchmarks/speed.py --device cuda --models "${SPEED_MODELS:-resnet18}" \
    --batch-sizes "${SPEED_BATCHES:-64}" --steps 20 --rounds 3 --json "$art/speed-gpu.json"

# One cell trains 36 x 5,625 images per epoch of its megabatches (T = 8, full replay, 90 % of each for training).
# Four cells share the GPU; assume they get 1.5x one cell's rate together (one cell at batch 64 leaves the
# H100 waiting on kernel launches) and spend 15 % beyond training.
rate=$(python3 -c "import json; print(next(r['almabench_img_s'] for r in json.load(open('$art/speed-gpu.json'))
                                        if r['model'] == 'resnet18' and r['batch_size'] == 64))" || echo 5000)
left=$((budget - SECONDS - 20))
epochs=${EPOCHS:-$(python3 -c "print(max(1, min(30, int(($left - 30) * $rate * 1.5 / (4 * 202500 * 1.15)))))")}
echo "resnet18 batch 64: $rate img/s; $left s left -> $epochs epochs per megabatch"

timeout "$left" almabench run --spec benchmarks/study-cifar10.toml --arch resnet18 --seeds 0 --epochs "$epochs" \
    --device cuda --data-root "$data" --out "$study"

python3 - "$study" "$art/partial.json" <<'EOF'
import json, sys
from pathlib import Path
from almabench.results.store import load_checkpoint
cells = [{"key": json.loads(s["key"]), "seconds": s["seconds"], "steps": json.loads(s["steps"])}
         for s in map(load_checkpoint, sorted(Path(sys.argv[1], ".checkpoints").glob("*.pt")))]
Path(sys.argv[2]).write_text(json.dumps(cells, indent=1))
print(f"{len(cells)} unfinished cells")
EOF
tar czf "$art/study.tgz" -C "$study" --exclude=.checkpoints --exclude=.locks .
