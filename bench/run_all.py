"""Runs every benchmark and prints a summary.

eval "$(shoal env)"; python bench/run_all.py
"""

import json
import platform
import time

import cluster_start
import cold_start
import dict_queue
import forward
import image_cache_hit
import image_store
import map_throughput
import remote_latency
import rpc_floor
import sandbox
import second_run
import server_requests
import volume_transfer
import web_endpoint

if __name__ == "__main__":
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {__import__('os').cpu_count()} cores",
        "rpc_floor": rpc_floor.main(1000),
        "remote_latency": remote_latency.main(),
        "map_throughput": map_throughput.main(),
        "cold_start": cold_start.main(),
        "second_run": second_run.main(),
        "image_store": image_store.main(),
        "image_cache_hit": image_cache_hit.main(),
        "volume_transfer": volume_transfer.main(512, 1000),
        "dict_queue": dict_queue.main(1000),
        "web_endpoint": web_endpoint.main(),
        "sandbox": sandbox.main(),
        "cluster_start": cluster_start.main(3),
        "forward": forward.main(),
        "server_requests": server_requests.main(),
    }
    print(json.dumps(results, indent=2))
