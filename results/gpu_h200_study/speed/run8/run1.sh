#!/bin/bash
# session 6 call 1: GPU tests (fp16 kernel test edited last session), output code of a 2-layer model, pointwise ablations
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt
timeout 170 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_clock.py tests/passes/optical/test_hash.py "tests/passes/optical/test_attention_kernel.py" 2>&1 | tail -15 > $OUT/tests.log
cat $OUT/tests.log
TORCH_LOGS=output_code timeout 150 python .gpu6/dump2.py > $OUT/dump2.log 2>&1; tail -5 $OUT/dump2.log
timeout 200 python .gpu6/pw2.py 2>&1 | grep -v -i warn | tail -30
