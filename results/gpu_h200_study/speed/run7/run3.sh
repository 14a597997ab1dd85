#!/bin/bash
# call 3: kernel-time profile at 32x128; eval 128x128 with sequential timing
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
timeout 270 python .gpu5/prof2.py 32x128 2>&1 | grep -v -i warn | tail -45
CMD="optopass bench --modes eval --sizes 128x128 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 30 --warmup 5 --json"
echo "$CMD" > $OUT/eval_128x128.cmd
timeout 290 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_128x128.json 2> >(grep -v -i warn > $OUT/eval_128x128.log)
tail -10 $OUT/eval_128x128.log
