#!/usr/bin/env bash
# The GPU study behind results/: run on a machine with 2 GPUs (one works, serially).
#   bash examples/gpu_study.sh OUT_DIR GLUE_DIR MODEL_DIR [PHASE...]
# Phases: bench, glue, sqz, ptq, ddp (default: all). Logs and result files go under OUT_DIR.
# bench and sqz run on the last GPU, glue and ptq on the first, ddp on two. The whole study
# outlasts one 10-minute device command: start it with setsid and poll for "phases done".
set -u
OUT=${1:?out dir}; GLUE=${2:?glue dir}; MODEL=${3:?model dir}; shift 3
PHASES=${*:-bench glue sqz ptq ddp}
LAST=$(( $(python -c 'import torch; print(torch.cuda.device_count())') - 1 ))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
CLI="python -m optopass.tools.cli"
NGPU=$(python -c 'import torch; print(torch.cuda.device_count())')
run_bench() {
  CUDA_VISIBLE_DEVICES=$((NGPU - 1)) $CLI bench --json > "$OUT/bench.json" 2> "$OUT/bench.log"
  CUDA_VISIBLE_DEVICES=$((NGPU - 1)) python -c "
import json; from optopass.tools.bench import Row, format_rows
print(format_rows([Row(**r) for r in json.load(open('$OUT/bench.json'))]))" > "$OUT/bench.txt" 2>> "$OUT/bench.log"
}
run_glue() {
  CUDA_VISIBLE_DEVICES=0 python examples/glue_eval.py --model "$MODEL" --glue-dir "$GLUE" --out "$OUT/glue" \
    --tasks sst2 mrpc cola stsb rte --seeds 1 2 3 --bf16 --batch-size 32 --epochs 2 --learning-rates 1e-4 \
    --max-train-samples 8000 --optical-max-train-samples 4000 --optical-epochs 1 \
    --squeezelight-cfg none --no-progress > "$OUT/glue.log" 2>&1
}
run_sqz() {  # both technologies on SST-2 and MRPC, smaller training budget (SqueezeLight is slow)
  CUDA_VISIBLE_DEVICES=$LAST python examples/glue_eval.py --model "$MODEL" --glue-dir "$GLUE" --out "$OUT/sqz" \
    --tasks sst2 mrpc --seeds 1 --bf16 --batch-size 32 --epochs 3 --optical-epochs 1 \
    --max-train-samples 2000 --no-progress > "$OUT/sqz.log" 2>&1
}
run_ptq() {
  CUDA_VISIBLE_DEVICES=0 python examples/ptq_study.py --runs "$OUT/glue" --glue-dir "$GLUE" --out "$OUT/ptq" \
    --dtype bf16 > "$OUT/ptq.log" 2>&1
}
run_ddp() {
  [ "$NGPU" -ge 2 ] || { echo "ddp: needs 2 GPUs" > "$OUT/ddp.log"; return; }
  torchrun --nproc_per_node=2 -m optopass.tools.cli finetune --model "$OUT/glue/models/mrpc/seed1/original" \
    --task mrpc --glue-dir "$GLUE" --cfg transform_cfg.yaml --out "$OUT/ddp_mrpc" --max-steps 60 --bf16 \
    --per-device-train-batch-size 16 > "$OUT/ddp.log" 2>&1
}
for phase in $PHASES; do
  case $phase in
    bench) (run_bench; [[ " $PHASES " == *" sqz "* ]] && run_sqz) & BENCH_PID=$! ;;
    sqz) [[ " $PHASES " == *" bench "* ]] || run_sqz ;;
    glue) run_glue ;;
    ptq) run_ptq ;;
    ddp) run_ddp ;;
  esac
done
[ -n "${BENCH_PID:-}" ] && wait "$BENCH_PID"
echo "phases done: $PHASES"
