#!/usr/bin/env bash
# The end-to-end benchmark on a CUDA machine, time-boxed to about 6 minutes on an H200:
#   benchmarks/e2e.py --device cuda at 2 and 12 MP, known and blind exposure times, on the real
#   handheld bracket motion_carport of ../shared/data/brackets (where that folder is absent, on the
#   repository's fixture copy of frobisher), beside debevec, with one `emvnet enhance` per case.
#
#   benchmarks/gpu_e2e.sh OUT_DIR
#
# Installs nothing (the machine's python3 with torch, as benchmarks/gpu_check.sh uses). Writes to
# OUT_DIR: log.txt (all output), e2e.md (the table, with its command) and results.json.
set -u
OUT_DIR=${1:?usage: benchmarks/gpu_e2e.sh OUT_DIR}
mkdir -p "$OUT_DIR"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

{
  stamp "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  nproc

  stamp "end to end on CUDA, 2 and 12 MP, known and blind"
  scene=motion_carport
  [ -f ../shared/data/brackets/$scene/exposures.txt ] || scene=frobisher
  timeout 330 python3 benchmarks/e2e.py --device cuda --sizes 2 12 --modes known blind \
    --scenes "$scene" --repeats 3 --out "$OUT_DIR"
  echo "e2e exit $?"
  stamp "done"
} 2>&1 | tee "$OUT_DIR/log.txt"
