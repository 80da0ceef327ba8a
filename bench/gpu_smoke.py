"""The GPU smoke test, for a machine with an NVIDIA GPU (as root, with runc): the GPUs a worker
finds through NVML, and containers started the way a worker starts them (runtime/, with the
device node, driver files and variables of worker/nvidia.py). The one given a GPU must see that
GPU alone and run CUDA through PyTorch, and the worker's utilisation readings must see it busy
while it multiplies; the one given none must see no GPU.

The containers' root is the host's own files, read-only (/usr, /etc, /opt), under a throw-away
layer: a machine that reaches no registry has no other PyTorch to run. Prints one JSON report
(also written to --out) and exits non-zero if a check failed.

    PYTHONPATH=src python3 bench/gpu_smoke.py [--python /opt/torch/.venv/bin/python3] [--out report.json]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable

from shoal.runtime import BindMount, ContainerSpec, Runtime
from shoal.worker import nvidia

PROBE = """
import json, torch
report = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
if report["cuda_available"]:
    report["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    x = torch.ones(1024, 1024, device="cuda")
    report["matmul_sum"] = float((x @ x).sum())  # 1024 * 1024 * 1024
print(json.dumps(report))
"""
BUSY = """
import time, torch
x = torch.randn(8192, 8192, device="cuda")
end = time.monotonic() + 5
while time.monotonic() < end:
    x @ x
    torch.cuda.synchronize()
"""
HOST_DIRS = ("/etc", "/opt")  # beside /usr's own directories
USR_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def host_root(skeleton: str) -> list[BindMount]:
    """The host's files as a container root: /usr's directories but local/ (where the driver's files
    are mounted, as in any image), /etc and /opt, read-only; top-level links as the host has them."""
    for name in ("usr/local", "tmp", "root"):
        os.makedirs(os.path.join(skeleton, name), exist_ok=True)
    mounts = [BindMount(d, d) for d in HOST_DIRS if os.path.isdir(d)]
    for name in sorted(os.listdir("/usr")):
        if name != "local" and os.path.isdir(os.path.join("/usr", name)):
            mounts.append(BindMount(f"/usr/{name}", f"/usr/{name}"))
    for name in USR_MERGED:
        path = f"/{name}"
        if os.path.islink(path):
            os.symlink(os.readlink(path), os.path.join(skeleton, name))
        elif os.path.isdir(path):
            mounts.append(BindMount(path, path))
    return mounts


async def run(
    runtime: Runtime,
    root: tuple[str, list[BindMount]],
    args: list[str],
    gpus: list[nvidia.NvidiaGpu],
    watch: Callable[[], None] = lambda: None,
) -> dict:
    """Run args in a container on `root` (host_root's skeleton and mounts) given these GPUs, as a
    worker gives them, calling `watch` every half second meanwhile; its exit code and output."""
    skeleton, mounts = root[0], list(root[1])
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    if gpus:
        nvidia.container_env(env, [g.uuid for g in gpus])
        mounts += nvidia.driver_mounts()
    output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
    spec = ContainerSpec(
        id=f"gpu-smoke-{uuid.uuid4().hex[:8]}",
        lower_dirs=[skeleton],
        args=args,
        env=env,
        bind_mounts=mounts,
        gpu_devices=[f"/dev/nvidia{g.minor}" for g in gpus],
    )
    container = await runtime.start(spec, lambda fd, data: output[fd].extend(data))
    try:
        async with asyncio.timeout(300):
            while (code := await _exit_within(container, 0.5)) is None:
                watch()
    finally:
        await runtime.remove(container)
    stdout, stderr = output[1].decode(errors="replace"), output[2].decode(errors="replace")
    return {"args": args, "code": code, "stdout": stdout, "stderr": stderr[-2000:]}


async def _exit_within(container, seconds: float) -> int | None:
    try:
        return await asyncio.wait_for(container.wait(), seconds)
    except TimeoutError:
        return None


def probe_result(ran: dict) -> dict:
    try:
        return json.loads(ran["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


async def main(python: str) -> dict:
    report: dict = {"checks": {}}
    gpus = nvidia.discover()
    report["nvml"] = [g.__dict__ for g in gpus]
    checks = report["checks"]
    checks["nvml finds a GPU"] = bool(gpus)
    if not gpus:
        return report
    given = gpus[0]
    report["driver_mounts"] = [m.target for m in nvidia.driver_mounts()]
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as skeleton:
        runtime, root = Runtime(state), (skeleton, host_root(skeleton))
        try:
            smi = await run(runtime, root, ["nvidia-smi", "-L"], [given])
            report["nvidia_smi"] = smi
            listed = [line for line in smi["stdout"].splitlines() if line.startswith("GPU ")]
            checks["its container lists the GPU it was given, alone"] = (
                smi["code"] == 0 and len(listed) == 1 and given.uuid in listed[0]
            )
            with_gpu = await run(runtime, root, [python, "-c", PROBE], [given])
            report["torch_with_gpu"] = with_gpu
            found = probe_result(with_gpu)
            checks["torch.cuda in the container given the GPU"] = (
                found.get("cuda_available") is True and found.get("matmul_sum") == 1024.0**3
            )
            # The worker's utilisation readings (NVML, as `modal function stats` shows them) while it works.
            utilization, readings = nvidia.Utilization(), []
            busy = await run(
                runtime, root, [python, "-c", BUSY], [given], lambda: readings.append(utilization.percent(given.uuid))
            )
            report["utilization_while_busy"] = readings
            checks["the worker reads its GPU busy"] = (
                busy["code"] == 0 and max((r or 0.0 for r in readings), default=0.0) > 50
            )
            without = await run(runtime, root, [python, "-c", PROBE], [])
            report["torch_without_gpu"] = without
            checks["no GPU in a container given none"] = probe_result(without).get("cuda_available") is False
        except Exception as e:  # runc or the kernel refused: the report says how
            report["error"] = repr(e)
            checks["containers run"] = False
        finally:
            await runtime.cleanup_all()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the host's Python that has PyTorch")
    parser.add_argument("--out", help="also write the report here")
    options = parser.parse_args()
    result = asyncio.run(main(options.python))
    text = json.dumps(result, indent=2)
    print(text)
    if options.out:
        with open(options.out, "w") as f:
            f.write(text)
    sys.exit(0 if result["checks"] and all(result["checks"].values()) else 1)
