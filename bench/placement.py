"""Placement decisions on a large simulated pool: 1,000 workers, 10,000 running containers.

Workers have 32 CPUs, 256 GiB and, for half of them, 8 GPUs of one type. The pool is
filled with 10,000 containers, then each sample places one more (a mix of CPU-only and
GPU requests, some with fallbacks) and releases it. No server needed:

    python bench/placement.py [samples]
"""

import random
import statistics
import sys
import time

from shoal.control.placement import Gpu, GpuChoice, Pool, Request, Worker

GPU_TYPES = ("H100", "A100-80GB", "L4", "A10G")
REQUESTS = (
    Request(milli_cpu=1000, memory_mb=2048),
    Request(),
    Request(milli_cpu=4000, memory_mb=16384, gpus=(GpuChoice("H100", 1),)),
    Request(gpus=(GpuChoice("H100", 2), GpuChoice("A100-80GB", 2))),
    Request(gpus=(GpuChoice("L4", 1),)),
)


def build_pool(workers: int, containers: int, rng: random.Random) -> Pool:
    pool = Pool()
    for i in range(workers):
        gpus = tuple(Gpu(g, GPU_TYPES[i // 2 % 4], f"GPU-{i}-{g}") for g in range(8)) if i % 2 else ()
        pool.add(Worker(f"w{i:04d}", 32000, 262144, gpus, images={f"im-{i % 50}"}))
    placed = 0
    while placed < containers:
        if pool.place(rng.choice(REQUESTS[:2]), f"ta-{placed}", f"im-{rng.randrange(50)}"):
            placed += 1
    return pool


def main(samples: int = 2000) -> dict:
    rng = random.Random(7)
    pool = build_pool(1000, 10000, rng)
    times = []
    for i in range(samples):
        request = REQUESTS[i % len(REQUESTS)]
        t0 = time.perf_counter()
        pool.place(request, "ta-probe", f"im-{rng.randrange(50)}")
        times.append(time.perf_counter() - t0)
        pool.release("ta-probe")
    times.sort()
    result = {
        "workers": 1000,
        "containers": 10000,
        "samples": samples,
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(samples * 0.99)] * 1000, 3),
    }
    print(f"placement, 1,000 workers and 10,000 containers: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
