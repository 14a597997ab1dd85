#!/bin/bash
# call 2: pointwise arithmetic variants; eval 32x128 with interleaved and sequential timing
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
timeout 150 python .gpu5/pointwise.py 2>&1 | grep -v -i warn | tail -12
CMD="optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --timing interleaved sequential --iters 50 --warmup 5 --json"
echo "$CMD" > $OUT/eval_32x128.cmd
timeout 400 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_32x128.json 2> >(grep -v -i warn > $OUT/eval_32x128.log)
tail -14 $OUT/eval_32x128.log
