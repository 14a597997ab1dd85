#!/bin/bash
# One call on two GPUs: stage A = kernel tests, attention micro-bench and eval 32x128 on GPU 0,
# train 32x128 on GPU 1; stage B = eval 8x512 (+ composed-attention eval 32x128) on GPU 0,
# eval 128x128 on GPU 1. Every table is plain vs optical measured in one process.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $OUT/gpu.txt
python -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" >> $OUT/gpu.txt
bench() {  # gpu name limit bench-args...
  local gpu=$1 name=$2 limit=$3; shift 3
  echo "optopass bench $* --iters 50 --warmup 5 --json" > $OUT/$name.cmd
  CUDA_VISIBLE_DEVICES=$gpu timeout $limit python -m optopass.tools.cli bench "$@" --iters 50 --warmup 5 --json \
    > $OUT/$name.json 2> >(grep -v -i "warn" > $OUT/$name.log)
  echo "rc $?" >> $OUT/$name.log
  python -c "import json,sys; from optopass.tools.bench import Row, format_rows; print(format_rows([Row(**r) for r in json.load(open(sys.argv[1]))]))" $OUT/$name.json > $OUT/$name.table 2>/dev/null
}
PLAIN="--compile-modes eager compiled cudagraphs --optical-modes cudagraphs"
case ${1:-A} in
A)
  ( CUDA_VISIBLE_DEVICES=0 timeout 100 python -m pytest -q -p no:cacheprovider -c tests/pytest.ini \
      tests/passes/optical/test_attention_kernel.py tests/passes/optical/test_fused_attention.py tests/passes/optical/test_hash.py > $OUT/tests.log 2>&1
    CUDA_VISIBLE_DEVICES=0 timeout 150 python .gpu4/attn_bench.py > $OUT/attn_bench.out 2>&1
    bench 0 eval_32x128 320 --modes eval --sizes 32x128 $PLAIN ) &
  bench 1 train_32x128 570 --modes train --sizes 32x128 $PLAIN --no-reference &
  wait ;;
B)
  ( bench 0 eval_8x512 290 --modes eval --sizes 8x512 $PLAIN
    bench 0 eval_32x128_unfused 270 --modes eval --sizes 32x128 $PLAIN --attention-kernels unfused --no-reference ) &
  bench 1 eval_128x128 400 --modes eval --sizes 128x128 $PLAIN &
  wait ;;
esac
tail -n 3 $OUT/*.log; cat $OUT/*.table $OUT/attn_bench.out 2>/dev/null
