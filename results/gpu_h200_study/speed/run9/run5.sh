#!/bin/bash
# session 7 call 5: training step 32x128 (in a row), plain compiled against optopass cudagraphs
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $OUT/gpu.txt
CMD="optopass bench --modes train --sizes 32x128 --compile-modes compiled --optical-modes cudagraphs --timing sequential --no-reference --iters 20 --warmup 3 --json"
echo "$CMD" > $OUT/train_32x128.cmd
SECONDS=0
timeout 300 python -m optopass.tools.cli ${CMD#optopass } > $OUT/train_32x128.json 2> >(grep -v -i "warn\|softmax\|split the\|important use" > $OUT/train_32x128.log)
echo "rc $? in $SECONDS s" >> $OUT/train_32x128.log
tail -4 $OUT/train_32x128.log
