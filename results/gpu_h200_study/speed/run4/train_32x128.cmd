optopass bench --modes train --sizes 32x128 --compile-modes eager compiled cudagraphs --optical-modes cudagraphs --no-reference --iters 50 --warmup 5 --json
