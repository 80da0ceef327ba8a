"""Clusters (`@modal.clustered`): from `.remote()` to the result of a call whose ranks all reach
rank 0 over TCP, with no container running yet (cold) and on the cluster the first call left
(warm), for clusters of 1 to 8 containers. The image is cached; a plain function's cold start is
timed beside them as the yardstick.

    eval "$(shoal env)"; python bench/cluster_start.py [samples]
"""

import socket
import statistics
import sys
import time

import modal

app = modal.App("bench-clusters")


def rendezvous(port: int) -> int:
    """Every rank connects to rank 0 at its cluster address; rank 0 returns how many did."""
    cluster = modal.Cluster.from_context()
    ips = cluster.container_ips()
    if cluster.container_rank() == 0:
        with socket.socket(socket.AF_INET6) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((ips[0], port))
            server.listen()
            for _ in ips[1:]:
                server.accept()[0].close()
        return len(ips)
    while True:
        try:
            socket.create_connection((ips[0], port), timeout=5).close()
            return 0
        except OSError:
            time.sleep(0.01)


@app.function()
def plain(port: int) -> int:
    return 1


@app.function()
@modal.clustered(size=1)
def cluster_1(port: int) -> int:
    return rendezvous(port)


@app.function()
@modal.clustered(size=2)
def cluster_2(port: int) -> int:
    return rendezvous(port)


@app.function()
@modal.clustered(size=4)
def cluster_4(port: int) -> int:
    return rendezvous(port)


@app.function()
@modal.clustered(size=8)
def cluster_8(port: int) -> int:
    return rendezvous(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(samples: int = 5) -> dict:
    with app.run():
        plain.remote(0)  # the image is built or found before anything is timed
    results = {}
    for name, function, size in [
        ("plain", plain, 1),
        ("cluster_1", cluster_1, 1),
        ("cluster_2", cluster_2, 2),
        ("cluster_4", cluster_4, 4),
        ("cluster_8", cluster_8, 8),
    ]:
        cold, warm = [], []
        for _ in range(samples):
            port = free_port()
            with app.run():
                t0 = time.perf_counter()
                assert function.remote(port) == size
                cold.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert function.remote(port) == size
                warm.append(time.perf_counter() - t0)
        results[name] = {
            "cold_median_s": round(statistics.median(cold), 3),
            "cold_max_s": round(max(cold), 3),
            "warm_median_ms": round(statistics.median(warm) * 1000, 1),
        }
        r = results[name]
        print(f"{name}: cold median {r['cold_median_s']} s (max {r['cold_max_s']}), warm {r['warm_median_ms']} ms")
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
