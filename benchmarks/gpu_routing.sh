#!/usr/bin/env bash
# CIFAR-10/5 at the reference's CIFAR budget (preset cifar100: 50+50 epochs, batch 256, T 6.5) on a
# lent GPU: train once (seed 0, routing statistics gathered per task), then every routing policy on
# the same sub-networks (benchmarks/routing.py), then the CUDA tests. Run from the repository root
# with the CIFAR-10 JPEG tarball at .gpu/cifar10-jpg.tar.gz (copied from ../shared/datasets; the
# folder is git-ignored and carried to the device machine) and OUT set to an output folder.
# An interrupted run is resumed from .gpu/runs (copy OUT/runs there and call again).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-results/gpu}
mkdir -p "$OUT/runs" /tmp/data
start=$(date +%s)
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; exit 1; }
tar -xzf .gpu/cifar10-jpg.tar.gz -C /tmp/data
[ -d .gpu/runs ] && cp -r .gpu/runs/. "$OUT/runs/"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout "${TRAIN_TIMEOUT:-520}" python3 benchmarks/routing.py --dataset imagefolder --root /tmp/data/cifar10-jpg \
  --preset cifar100 --device cuda --seeds "${SEEDS:-0}" --runs-dir "$OUT/runs" \
  --json "$OUT/routing-cifar10-5-h200.json" 2>&1 | grep -v "it/s\]" | tail -40
echo "routing benchmark: rc ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
left=$(( ${BUDGET:-580} - ($(date +%s) - start) ))
if [ "$left" -gt 60 ]; then
  timeout $(( left - 10 )) python3 -m pytest -q -p no:cacheprovider tests/mind_edge/test_cuda.py 2>&1 | tail -5
fi
