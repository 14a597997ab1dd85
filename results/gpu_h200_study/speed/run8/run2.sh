#!/bin/bash
# session 6 call 2: the fp16 kernel test against the CPU composition; compile settings on a 2-layer model
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
timeout 60 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_attention_kernel.py -k ot_attention_eval 2>&1 | tail -4 > $OUT/tests.log
cat $OUT/tests.log
timeout 420 python .gpu6/exp2.py 2>&1 | grep -v -i warn | tail -20
