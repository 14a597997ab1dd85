#!/bin/bash
# session 7 call 4: eval 8x512 (in a row)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $OUT/gpu.txt
CMD="optopass bench --modes eval --sizes 8x512 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential --no-reference --iters 30 --warmup 3 --json"
echo "$CMD" > $OUT/eval_8x512.cmd
timeout 230 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_8x512.json 2> >(grep -v -i warn > $OUT/eval_8x512.log)
tail -4 $OUT/eval_8x512.log
