#!/bin/bash
# session 7 call 2: attention variants (even, one exp, exact scale, single pass up to 512 keys)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
cd /tmp/pk/optopass
timeout 330 python .gpu7/attn_bench.py 2>&1 | grep -v -i warn | tail -30
