#!/bin/bash
# Two GPUs, two bench processes whose timed rounds start together (bench_sync.py); logs in one tarball.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1 BARRIER_DIR=/tmp/barrier BARRIER_N=2 TORCHINDUCTOR_COMPILE_THREADS=12
mkdir -p /tmp/barrier /tmp/res
R=/tmp/res
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/gpu.txt
python -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" >> $R/gpu.txt
bench() {  # gpu name limit bench-args...
  local gpu=$1 name=$2 limit=$3; shift 3
  echo "optopass bench $* --iters 50 --warmup 5 --json" > $R/$name.cmd
  CUDA_VISIBLE_DEVICES=$gpu timeout $limit python .gpu4/bench_sync.py bench "$@" --iters 50 --warmup 5 --json \
    > $R/$name.json 2> >(grep -v -i "warn" > $R/$name.log)
  echo "rc $?" >> $R/$name.log
  python -c "import json,sys; from optopass.tools.bench import Row, format_rows; print(format_rows([Row(**r) for r in json.load(open(sys.argv[1]))]))" $R/$name.json > $R/$name.table 2>/dev/null
}
PLAIN="--compile-modes eager compiled cudagraphs --optical-modes cudagraphs"
case $1 in
B)
  ( CUDA_VISIBLE_DEVICES=0 timeout 90 python -m pytest -q -p no:cacheprovider -c tests/pytest.ini \
      tests/passes/optical/test_attention_kernel.py tests/passes/optical/test_fused_attention.py tests/passes/optical/test_hash.py > $R/tests.log 2>&1
    bench 0 eval_32x128 480 --modes eval --sizes 32x128 $PLAIN --attention-kernels auto unfused ) &
  bench 1 train_32x128 560 --modes train --sizes 32x128 $PLAIN --no-reference &
  wait ;;
C)
  bench 0 eval_8x512 560 --modes eval --sizes 8x512 $PLAIN &
  bench 1 eval_128x128 560 --modes eval --sizes 128x128 $PLAIN &
  wait ;;
esac
tail -n 4 $R/tests.log $R/*.log 2>/dev/null; cat $R/*.table
tar czf $OUT/results_$1.tgz -C $R .
