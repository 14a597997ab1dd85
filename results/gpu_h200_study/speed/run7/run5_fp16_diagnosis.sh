#!/bin/bash
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
cd /tmp/pk/optopass
timeout 60 python -m pytest -q -p no:cacheprovider "tests/passes/optical/test_attention_kernel.py::test_kernel_matches_ot_attention_eval" --tb=short 2>&1 | grep -E "Error|assert|differ|max error|passed|failed" | head -12
timeout 60 python - <<'PY' 2>&1 | grep -v -i warn | tail -5
import torch
from tests.passes.optical import test_attention_kernel as t
torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
try:
    t.test_kernel_matches_ot_attention_eval(torch.float16); print("fp16 with full-precision reduction: passed")
except AssertionError as e:
    print("fp16 with full-precision reduction: FAILED", str(e)[:300])
PY
