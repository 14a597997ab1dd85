optopass bench --modes eval --sizes 128x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --iters 50 --warmup 5 --json
