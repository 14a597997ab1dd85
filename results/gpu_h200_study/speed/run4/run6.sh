#!/bin/bash
# One GPU, one process: eval 32x128, plain in three modes beside optopass in cudagraphs.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
echo "optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --no-reference --iters 50 --warmup 5 --json" > $OUT/cmd.txt
timeout 500 python -m optopass.tools.cli bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --no-reference --iters 50 --warmup 5 --json > $OUT/eval_32x128_single.json 2> >(grep -v -i warn > $OUT/eval_32x128_single.log)
cat $OUT/eval_32x128_single.log
