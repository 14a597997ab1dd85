#!/usr/bin/env bash
# The GPU study behind results/: best on a machine with 2 GPUs (one works, serially).
#   bash examples/gpu_study.sh OUT_DIR GLUE_DIR MODEL_DIR [PHASE...]
# Phases (default: glue after): glue, after, ddp.
#   glue   examples/glue_eval.py on every GPU (--gpus): original / random / ot_ptq / ot_ft, 5 tasks x 3 seeds
#   after  in parallel: the range study (examples/ptq_study.py) on GPU 0 and on the last GPU after
#          `optopass bench` there (no other work shares the benchmark's GPU)
#   ddp    optical fine-tuning under torchrun on two GPUs
# Logs and result files go under OUT_DIR. The whole study outlasts one 10-minute device command:
# start it with setsid and poll for "phases done".
set -u
OUT=${1:?out dir}; GLUE=${2:?glue dir}; MODEL=${3:?model dir}; shift 3
PHASES=${*:-glue after}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
CLI="python -m optopass.tools.cli"
NGPU=$(python -c 'import torch; print(torch.cuda.device_count())')
LAST=$((NGPU - 1))
TASKS="sst2 mrpc cola stsb rte"
SEEDS="1 2 3"
# tasks of the range study on GPU 0 and on the last GPU (which runs the benchmark first)
PTQ_A="sst2 cola stsb"; PTQ_B="mrpc rte"
[ "$NGPU" -ge 2 ] || { PTQ_A="$TASKS"; PTQ_B=""; }

run_glue() {
  python examples/glue_eval.py --model "$MODEL" --glue-dir "$GLUE" --out "$OUT/glue" --gpus "$NGPU" \
    --tasks $TASKS --seeds $SEEDS --bf16 --batch-size 32 --epochs 2 --learning-rates 1e-4 \
    --max-train-samples 8000 --optical-max-train-samples 4000 --optical-epochs 1 \
    --squeezelight-cfg none --no-progress > "$OUT/glue.log" 2>&1
}
ptq() {  # GPU, tasks, out, extra options
  local gpu=$1 tasks=$2 out=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu python examples/ptq_study.py --runs "$OUT/glue" --glue-dir "$GLUE" --out "$out" \
    --tasks $tasks --seeds $SEEDS --dtype bf16 "$@" >> "$OUT/ptq.log" 2>&1
}
run_bench() {
  CUDA_VISIBLE_DEVICES=$LAST $CLI bench --sizes 32x128 8x512 128x128 --iters 30 --warmup 5 --json \
    > "$OUT/bench.json" 2> "$OUT/bench.log"
  python -c "
import json; from optopass.tools.bench import Row, format_rows
print(format_rows([Row(**r) for r in json.load(open('$OUT/bench.json'))]))" > "$OUT/bench.txt" 2>> "$OUT/bench.log"
}
run_after() {
  ( ptq 0 "$PTQ_A" "$OUT/ptq_a" --sensitivity-task none --ft-levels-tasks stsb ) &
  local a=$!
  if [ -n "$PTQ_B" ]; then
    run_bench
    ptq "$LAST" "$PTQ_B" "$OUT/ptq_b" --sensitivity-task mrpc --ft-levels-tasks mrpc
  fi
  wait "$a"
  [ -z "$PTQ_B" ] && run_bench
  python examples/ptq_study.py --merge "$OUT"/ptq_a "$OUT"/ptq_b --out "$OUT/ptq" --tasks $TASKS >> "$OUT/ptq.log" 2>&1
  cp "$OUT"/ptq_*/site_sensitivity.* "$OUT"/ptq_*/qlevels_ft.* "$OUT/ptq/" 2>/dev/null
  python - "$OUT" <<'PY' >> "$OUT/ptq.log" 2>&1
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for part in sorted(out.glob("ptq_*/qlevels_ft.csv")):
    with part.open() as f:
        rows += list(csv.reader(f))[1:]
if rows:
    with (out / "ptq" / "qlevels_ft.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["task", "seed", "q_levels", "ptq_score", "ft_score"], *rows])
PY
}
run_ddp() {
  [ "$NGPU" -ge 2 ] || { echo "ddp: needs 2 GPUs" > "$OUT/ddp.log"; return; }
  torchrun --nproc_per_node=2 -m optopass.tools.cli finetune --model "$OUT/glue/models/mrpc/seed1/original" \
    --task mrpc --glue-dir "$GLUE" --cfg transform_cfg.yaml --out "$OUT/ddp_mrpc" --max-steps 60 --bf16 \
    --per-device-train-batch-size 16 > "$OUT/ddp.log" 2>&1
}
for phase in $PHASES; do
  case $phase in
    glue) run_glue ;;
    after) run_after ;;
    ddp) run_ddp ;;
    *) echo "unknown phase $phase (allowed: glue after ddp)"; exit 2 ;;
  esac
  echo "phase $phase done $(date +%T)"
done
echo "phases done: $PHASES"
