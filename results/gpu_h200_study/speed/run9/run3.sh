#!/bin/bash
# session 7 call 3: GPU tests of the attention kernel, fused attention and fold; eval 32x128 (both timings) and 128x128 (in a row)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $OUT/gpu.txt
python -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)" >> $OUT/gpu.txt
timeout 110 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_attention_kernel.py tests/passes/optical/test_fold.py tests/passes/optical/test_fused_attention.py 2>&1 | tail -4 | tee $OUT/tests.log
CMD="optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 50 --warmup 5 --json"
echo "$CMD" > $OUT/eval_32x128.cmd
timeout 250 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_32x128.json 2> >(grep -v -i warn > $OUT/eval_32x128.log)
tail -8 $OUT/eval_32x128.log
CMD="optopass bench --modes eval --sizes 128x128 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential --no-reference --iters 30 --warmup 3 --json"
echo "$CMD" > $OUT/eval_128x128.cmd
timeout 190 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_128x128.json 2> >(grep -v -i warn > $OUT/eval_128x128.log)
tail -4 $OUT/eval_128x128.log
