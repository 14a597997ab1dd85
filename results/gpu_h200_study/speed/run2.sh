#!/bin/bash
# GPU session script: kernel tests, attention micro-bench, optopass bench (eval then train).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
mkdir -p /tmp/pk && ln -sfn $PWD /tmp/pk/optopass && export PYTHONPATH=/tmp/pk:$PYTHONPATH
export PYTHONUNBUFFERED=1
python -m pip install -q --no-index pytest 2>/dev/null
STAGE=${1:-all}
if [[ $STAGE == all || $STAGE == tests ]]; then
  timeout 60 python -m pytest -q -p no:cacheprovider -c tests/pytest.ini tests/passes/optical/test_attention_kernel.py tests/passes/optical/test_hash.py 2>&1 | tail -5 | tee $OUT/tests.log
  timeout 75 python .gpu/attn_bench.py 2>&1 | grep -v Warn | tail -5
fi
shift
for spec in "$@"; do  # e.g. "eval:32x128:eager,compiled,cudagraphs:250"
  IFS=: read mode sizes cmodes limit kernels <<< "$spec"
  timeout $limit python -m optopass.tools.cli bench --modes $mode --sizes ${sizes//,/ } --compile-modes ${cmodes//,/ } --attention-kernels ${kernels:-auto} --iters 50 --warmup 5 --json > $OUT/bench_${mode}_${sizes//,/_}_${kernels:-auto}.json 2> >(grep -v "Warn\|warn" | tee $OUT/bench_${mode}_${sizes//,/_}_${kernels:-auto}.log >&2)
  python -c "import json,sys; from optopass.tools.bench import Row, format_rows; print(format_rows([Row(**r) for r in json.load(open(sys.argv[1]))]))" $OUT/bench_${mode}_${sizes//,/_}_${kernels:-auto}.json 2>/dev/null | tee -a $OUT/tables.txt
done
