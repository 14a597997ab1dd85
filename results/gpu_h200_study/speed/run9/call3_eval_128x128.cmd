optopass bench --modes eval --sizes 128x128 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential --no-reference --iters 30 --warmup 3 --json
