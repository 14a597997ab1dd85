optopass bench --modes eval --sizes 128x128 --compile-modes compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 30 --warmup 5 --json
