"""Functions for a shoal whose containers run on joined workers: w-a (H100:1), w-b (H100:1, A10G:1)."""

import json
import os
import time

import modal

app = modal.App("e2e-workers")


def visible() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


@app.function(gpu="A10G")
def a10g() -> str:
    return visible()


@app.function(gpu="H100")
def h100_calls_cpu() -> tuple[str, str]:
    # A container on a joined worker reaches the API through that worker, here to call another function.
    return visible(), cpu.remote(20)


@app.function()
def cpu(x: int) -> str:
    return f"cpu {x * 2}"


@app.function(gpu="H100", timeout=300)
def slow_h100(seconds: float) -> str:
    print(f"running on {visible()}", flush=True)
    time.sleep(seconds)
    return visible()


@app.function(max_containers=3, scaledown_window=2)
def work(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["MODAL_TASK_ID"]


# A layer whose files are all copies of files the base already has: a worker fetches none of them.
copies = modal.Image.debian_slim().run_commands("cp -a /etc /opt/etc-copy")


@app.function(image=copies)
def copied() -> str:
    with open("/opt/etc-copy/passwd") as f:
        return f.readline().split(":")[0]


@app.function(gpu="L4")
def l4_probe(step: str) -> str:
    if step == "import":
        # Modules no one imported yet: their files come from the image's layers, which must still be there.
        import email.mime.text  # noqa: F401
        import http.server  # noqa: F401
        import xml.dom.minidom  # noqa: F401
    return visible()


@app.function(gpu="B200")
def impossible() -> str:
    return visible()


@app.function(gpu="H100", image=modal.Image.debian_slim().add_local_python_source("cluster_net"))
@modal.clustered(size=2)
def h100_cluster(port: int) -> list[dict]:
    from cluster_net import exchange

    cluster = modal.Cluster.from_context()
    mine = {"rank": cluster.container_rank(), "gpu": visible(), "ips": cluster.container_ips()}
    return exchange(mine["rank"], cluster.container_ips(), port, mine)


@app.local_entrypoint()
def clustered(port: int):
    print(f"cluster: {json.dumps(h100_cluster.remote(port))}")


@app.local_entrypoint()
def main():
    print(f"a10g: {a10g.remote()}")
    gpu, nested = h100_calls_cpu.remote()
    print(f"h100: {gpu}")
    print(f"nested: {nested}")
    print(f"copied: {copied.remote()}")
    try:
        impossible.remote()
    except Exception as e:
        print(f"impossible: {type(e).__name__}: {e}")


@app.local_entrypoint()
def slow(seconds: float = 20.0):
    print(f"result: {slow_h100.remote(seconds)}")


@app.local_entrypoint()
def burst():
    from container_count import containers_of  # local only: containers do not have this module

    print(f"before: {containers_of(app.app_id)}")
    calls = [work.spawn(4.0) for _ in range(9)]
    peak = 0
    while not all(_done(c) for c in calls):
        peak = max(peak, containers_of(app.app_id))
    print(f"peak: {peak}")
    print(f"distinct containers: {len({c.get() for c in calls})}")
    deadline = time.monotonic() + 60
    while containers_of(app.app_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"after: {containers_of(app.app_id)}")


def _done(call) -> bool:
    try:
        call.get(timeout=0)
        return True
    except TimeoutError:
        return False


@app.local_entrypoint()
def cache(flag: str):
    """Starts a container, then waits for the test to create `flag` before calling it again."""
    print(f"started: {l4_probe.remote('start')}", flush=True)
    while not os.path.exists(flag):
        time.sleep(0.2)
    print(f"imports: {l4_probe.remote('import')}", flush=True)
