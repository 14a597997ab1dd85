#!/bin/bash
# call 4: the DitherClock build: GPU tests of the clock and the fused attention; eval 32x128 both timings
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
timeout 150 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_clock.py tests/passes/optical/test_fused_attention.py tests/passes/optical/test_hash.py tests/passes/optical/test_attention_kernel.py 2>&1 | tail -4 > $OUT/tests.log
cat $OUT/tests.log
CMD="optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 50 --warmup 5 --json"
echo "$CMD" > $OUT/eval_32x128.cmd
timeout 330 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_32x128.json 2> >(grep -v -i warn > $OUT/eval_32x128.log)
tail -9 $OUT/eval_32x128.log
