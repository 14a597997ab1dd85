#!/bin/bash
# session 6 call 3: host time per compiled call before/after the attribute-write fix; eval 32x128 bench; GPU tests of the kernel keys
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONUNBUFFERED=1
(cd .gpu6/old && PYTHONPATH=$PWD:/tmp/site timeout 120 python ../host.py 2>&1 | grep -v -i warn | tail -3) | tee $OUT/host_before.log
(PYTHONPATH=/tmp/pk:/tmp/site timeout 120 python .gpu6/host.py 2>&1 | grep -v -i warn | tail -3) | tee $OUT/host_after.log
export PYTHONPATH=/tmp/pk:/tmp/site
cd /tmp/pk/optopass
timeout 60 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_attention_kernel.py -k "keys or ot_attention_eval" 2>&1 | tail -3 | tee $OUT/tests.log
timeout 60 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_fused_attention.py 2>&1 | tail -3 | tee -a $OUT/tests.log
CMD="optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 50 --warmup 5 --json"
echo "$CMD" > $OUT/eval_32x128.cmd
timeout 300 python -m optopass.tools.cli ${CMD#optopass } > $OUT/eval_32x128.json 2> >(grep -v -i warn > $OUT/eval_32x128.log)
tail -9 $OUT/eval_32x128.log
