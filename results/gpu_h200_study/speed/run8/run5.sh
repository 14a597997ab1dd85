#!/bin/bash
# session 6 call 5: host time per compiled call on torch 2.11 (old code, current, current with the old weight-cache write); the fold test failure
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONUNBUFFERED=1
F='s/^ *[0-9]* *//'
(cd .gpu6/old && PYTHONPATH=$PWD:/tmp/site timeout 70 python ../host2.py as-is 2>&1 | grep -v -i warn | grep -E "per call|graph inputs|[0-9] .*\(" | cut -c1-160) | tee $OUT/host_old.log
(PYTHONPATH=/tmp/pk:/tmp/site timeout 70 python .gpu6/host2.py as-is 2>&1 | grep -v -i warn | grep -E "per call|graph inputs|[0-9] .*\(" | cut -c1-160) | tee $OUT/host_new.log
(PYTHONPATH=/tmp/pk:/tmp/site timeout 70 python .gpu6/host2.py w-cache-old 2>&1 | grep -v -i warn | grep -E "per call|graph inputs|[0-9] .*\(" | cut -c1-160) | tee $OUT/host_wold.log
export PYTHONPATH=/tmp/pk:/tmp/site
cd /tmp/pk/optopass
timeout 40 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_fold.py -k "unfolded_numbers and fused and not unfused" 2>&1 | grep -E "^E|passed|failed" | head -12
