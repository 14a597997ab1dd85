optopass bench --modes eval --sizes 8x512 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --iters 50 --warmup 5 --json
