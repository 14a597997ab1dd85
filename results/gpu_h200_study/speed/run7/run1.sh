#!/bin/bash
# call 1: GPU tests of the kernel / eager-fusion / hash code, attention variants, eager optical bench
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
python -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)" >> $OUT/gpu.txt
cd /tmp/pk/optopass
timeout 200 python -m pytest -q -p no:cacheprovider tests/passes/optical/test_attention_kernel.py tests/passes/optical/test_fused_attention.py tests/passes/optical/test_hash.py tests/passes/optical/test_eager_fusion.py -x 2>&1 | tail -15 > $OUT/tests.log
tail -3 $OUT/tests.log
timeout 200 python .gpu5/attn_variants.py 2>&1 | grep -v -i warn | tail -30
echo "optopass bench --modes eval train --sizes 32x128 --compile-modes eager --optical-modes eager --no-reference --iters 20 --warmup 3 --json" > $OUT/eager.cmd
timeout 120 python -m optopass.tools.cli bench --modes eval train --sizes 32x128 --compile-modes eager --optical-modes eager --no-reference --iters 20 --warmup 3 --json > $OUT/eager_32x128.json 2> >(grep -v -i warn > $OUT/eager_32x128.log)
tail -8 $OUT/eager_32x128.log
