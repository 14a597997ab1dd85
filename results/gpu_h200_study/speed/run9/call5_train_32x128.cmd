optopass bench --modes train --sizes 32x128 --compile-modes compiled --optical-modes cudagraphs --timing sequential --no-reference --iters 20 --warmup 3 --json
