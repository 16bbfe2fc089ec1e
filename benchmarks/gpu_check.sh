#!/usr/bin/env bash
# The GPU checks of one short session on a CUDA machine, time-boxed to fit ~9 minutes:
#   1. speed of the networks on the GPU (benchmarks/speed.py --device cuda)
#   2. the CUDA paths of the tests (tests/emvnet/test_cuda.py, the engine and inference tests)
#      while, in the background,
#   3. emvnet-paper-rgb trains on the GPU (configs/emvnet-paper-rgb-gpu.toml) for TRAIN_S seconds and
#   4. the Table 3 ablation rows train at the shipped run's data scale (benchmarks/ablations.py),
#   5. then the trained paper network is scored on the dev set (known and blind exposures).
#
#   benchmarks/gpu_check.sh OUT_DIR        (needs data/dev: emvnet devset ../shared/data/hdr/dev --out data/dev)
#
# Everything lands in OUT_DIR: log.txt (all output), speed.txt, ablations.md/json, paper-rgb.tar
# (its log, loss curves, best weights) and the eval tables. Run from the repository root with the
# emvnet package importable (PYTHONPATH=. is set here).
set -u
OUT_DIR=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
TRAIN_S=${TRAIN_S:-240}
ABLATION_STEPS=${ABLATION_STEPS:-600}
mkdir -p "$OUT_DIR"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
RUNS=$(mktemp -d)
# `emvnet` without installing the package (timeout signals this process itself: no shell between)
EMVNET=(python3 -c 'import sys; from emvnet.cli import main; sys.exit(main())')
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

{
  stamp "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'

  stamp "1. speed"
  timeout 150 python3 benchmarks/speed.py --device cuda --variants emvnet-fast-rgb emvnet-paper-rgb \
    --sizes 1mp 12mp --paper-12mp --repeats 5 --batches 16 --no-accuracy 2>&1 | tee "$OUT_DIR/speed.txt"

  stamp "3. paper-rgb training (background, ${TRAIN_S} s)"
  timeout -s INT "$TRAIN_S" "${EMVNET[@]}" train configs/emvnet-paper-rgb-gpu.toml --out "$RUNS/paper-rgb" \
    > "$OUT_DIR/paper-rgb-train.txt" 2>&1 &
  train_pid=$!
  stamp "4. ablations (background, ${ABLATION_STEPS} steps per row)"
  timeout -s INT "$TRAIN_S" python3 benchmarks/ablations.py --device cuda --workers 6 --scale shipped \
    --steps "$ABLATION_STEPS" --rows full no-motion no-exposure no-mask --out "$RUNS/ablations" \
    > "$OUT_DIR/ablations-train.txt" 2>&1 &
  ablation_pid=$!

  stamp "2. CUDA tests"
  timeout 240 python3 -m pytest -q -p no:cacheprovider tests/emvnet/test_cuda.py tests/emvnet/net/test_engine.py \
    tests/emvnet/test_infer.py tests/emvnet/merge/test_fusion.py 2>&1 | tail -25

  stamp "waiting for the trainings"
  wait "$train_pid"; echo "paper-rgb training exit $?"
  wait "$ablation_pid"; echo "ablations exit $?"
  cp "$RUNS"/ablations/ablations.* "$OUT_DIR/" 2>/dev/null
  tail -c 1500 "$OUT_DIR/ablations-train.txt"

  stamp "5. paper-rgb on the dev set"
  weights=$(mktemp -d)
  if [ -f "$RUNS/paper-rgb/best.safetensors" ]; then
    cp "$RUNS/paper-rgb/best.safetensors" "$weights/emvnet-paper-rgb.safetensors"
    cp "$RUNS/paper-rgb/best.json" "$weights/emvnet-paper-rgb.json"
    grep -h '"val_psnr"' "$RUNS/paper-rgb/log.jsonl" | tail -20
    for mode in known blind; do
      flag=""; [ "$mode" = blind ] && flag="--blind"
      EMVNET_WEIGHTS_DIR=$weights timeout 60 "${EMVNET[@]}" eval data/dev --model emvnet-paper-rgb \
        --baselines '' --device cuda --no-sheets $flag --report "$RUNS/eval-$mode" 2>&1 | grep -v '^eval:' | tail -8
      cp "$RUNS/eval-$mode/metrics.md" "$OUT_DIR/paper-rgb-eval-$mode.md" 2>/dev/null
    done
    tar -C "$RUNS/paper-rgb" -cf "$OUT_DIR/paper-rgb.tar" best.safetensors best.json log.jsonl loss_curves.png 2>/dev/null
  else
    echo "no validated paper-rgb weights"; tail -c 3000 "$OUT_DIR/paper-rgb-train.txt"
  fi
  stamp "done"
} 2>&1 | tee "$OUT_DIR/log.txt"
