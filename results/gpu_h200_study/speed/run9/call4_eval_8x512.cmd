optopass bench --modes eval --sizes 8x512 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential --no-reference --iters 30 --warmup 3 --json
