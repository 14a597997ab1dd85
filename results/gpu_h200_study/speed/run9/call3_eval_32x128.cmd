optopass bench --modes eval --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --timing sequential interleaved --no-reference --iters 50 --warmup 5 --json
