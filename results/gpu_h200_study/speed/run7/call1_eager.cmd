optopass bench --modes eval train --sizes 32x128 --compile-modes eager --optical-modes eager --no-reference --iters 20 --warmup 3 --json
