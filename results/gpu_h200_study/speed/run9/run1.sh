#!/bin/bash
# session 7 call 1: attention-kernel variants, pointwise uniform variants, max-autotune at 128x128 (4 layers)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $OUT/gpu.txt
timeout 200 python .gpu7/attn_bench.py 2>&1 | grep -v -i warn | tail -30
timeout 120 python .gpu7/pw3.py 2>&1 | grep -v -i warn | tail -22
LAYERS=4 BATCH=128 timeout 240 python .gpu7/exp3.py "plain compiled" "plain reduce-overhead" "optical reduce-overhead" "optical max-autotune" 2>&1 | grep -v -i warn | tail -8
