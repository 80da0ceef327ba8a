"""Clustered functions (@modal.clustered) against a shoal whose worker declares H100:2, A10G:1."""

import json
import os
import socket
import sys
import time

import modal

app = modal.App("e2e-clustered", image=modal.Image.debian_slim().add_local_python_source("cluster_net"))


def report(x) -> dict:
    cluster = modal.Cluster.from_context()
    return {
        "rank": cluster.container_rank(),
        "x": x,
        "task": os.environ["MODAL_TASK_ID"],
        "hostname": socket.gethostname(),
        "i6pn": socket.getaddrinfo("i6pn.modal.local", None, socket.AF_INET6)[0][4][0],
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


@app.function()
@modal.clustered(size=3)
def gather(x: int, port: int) -> dict | None:
    from cluster_net import exchange

    cluster = modal.Cluster.from_context()
    mine = report(x)
    reports = exchange(mine["rank"], cluster.container_ips(), port, mine)
    if mine["rank"] != 0:
        return None  # not the call's: rank 0 answers
    return {
        "cluster": cluster.object_id,
        "ids": cluster.container_ids(),
        "ips": cluster.container_ips(),
        "ipv4": cluster.container_ips("ipv4"),
        "reports": reports,
    }


@app.function(gpu="H100")
@modal.clustered(size=2)
def gpu_ranks(port: int) -> list[dict]:
    from cluster_net import exchange

    cluster = modal.Cluster.from_context()
    mine = report(0)
    return exchange(mine["rank"], cluster.container_ips(), port, mine)


@app.function()
@modal.clustered(size=1)
def alone() -> tuple[int, int]:
    cluster = modal.Cluster.from_context()
    return cluster.container_rank(), len(cluster.container_ips())


@app.function(i6pn=True)
def private_address() -> str:
    return socket.getaddrinfo("i6pn.modal.local", None, socket.AF_INET6)[0][4][0]


@app.cls()
@modal.clustered(size=2)
class Ranks:
    @modal.method()
    def of_cluster(self) -> tuple[int, int]:
        cluster = modal.Cluster.from_context()
        return cluster.container_rank(), len(cluster.container_ips())


@app.function()
@modal.clustered(size=2)
def rank_one_fails() -> str:
    if modal.Cluster.from_context().container_rank() == 1:
        raise ValueError("rank 1 gave up")
    time.sleep(120)  # as if waiting on rank 1 in a collective
    return "rank 0 finished alone"


@app.function(gpu="A10G")
@modal.clustered(size=2)
def too_big() -> None:
    pass


@app.local_entrypoint()
def main(port: int):
    print("gather:", json.dumps(gather.remote(7, port)))
    print("again:", json.dumps(gather.remote(8, port)))
    print("gpu_ranks:", json.dumps(gpu_ranks.remote(port + 1)))
    print("alone:", json.dumps(alone.remote()))
    print("class:", json.dumps(Ranks().of_cluster.remote()))
    print("i6pn:", private_address.remote())
    for name, fails in {"rank_one_fails": rank_one_fails, "too_big": too_big}.items():
        try:
            fails.remote()
        except Exception as e:
            print(f"{name}: {type(e).__name__}: {e}".replace("\n", " "))
    sys.stdout.flush()
