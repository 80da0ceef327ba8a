"""NVIDIA GPUs: names to `gpu=` types, the driver's files, what a container given one gets."""

import sys
import types

from shoal.worker import nvidia
from shoal.worker.agent import LocalWorker
from shoal.worker.nvidia import LIB_DIR, NvidiaGpu

LDCONFIG = """\
1234 libs found in cache `/etc/ld.so.cache'
	libnvidia-ml.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ml.so.1
	libnvidia-ml.so.1 (libc6) => /lib/i386-linux-gnu/libnvidia-ml.so.1
	libnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1
	libcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12
	libcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
	libcuda.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so
	libc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6
"""


def test_gpu_names_become_the_types_gpu_asks_for():
    assert nvidia.gpu_type("NVIDIA H100 80GB HBM3", 81559) == "H100"
    assert nvidia.gpu_type("NVIDIA H200", 143771) == "H200"
    assert nvidia.gpu_type("NVIDIA A100-SXM4-40GB", 40960) == "A100-40GB"
    assert nvidia.gpu_type("NVIDIA A100 80GB PCIe", 81920) == "A100-80GB"
    assert nvidia.gpu_type("Tesla T4", 15360) == "T4"
    assert nvidia.gpu_type("NVIDIA L40S", 46068) == "L40S"
    assert nvidia.gpu_type("NVIDIA L4", 23034) == "L4"
    assert nvidia.gpu_type("NVIDIA RTX A6000", 49140) == "RTX-A6000"  # not one of Modal's: kept by its name


def test_driver_libraries_are_the_64_bit_compute_ones():
    found = nvidia.driver_libraries(LDCONFIG)
    assert found == {
        "libnvidia-ml.so.1": "/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1": "/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
        "libcuda.so.1": "/lib/x86_64-linux-gnu/libcuda.so.1",
        "libcuda.so": "/lib/x86_64-linux-gnu/libcuda.so",
    }  # not the CUDA runtime (the image brings its own), not libc, not the 32-bit copies


def test_a_driver_outside_the_loaders_cache_is_found_under_its_root(tmp_path):
    # As GKE installs it: /usr/local/nvidia/{lib64,bin}, which `ldconfig -p` may not list.
    root = tmp_path / "nvidia"
    (root / "lib64").mkdir(parents=True)
    (root / "bin").mkdir()
    for name in ("libcuda.so.580.159.03", "libnvidia-ml.so.580.159.03", "libcudart.so.13", "libfoo.so.1"):
        (root / "lib64" / name).write_bytes(b"")
    (root / "lib64" / "libcuda.so.1").symlink_to("libcuda.so.580.159.03")
    (root / "lib64" / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.580.159.03")
    (root / "bin" / "nvidia-smi").write_bytes(b"")
    (root / "bin" / "nvidia-smi").chmod(0o755)
    assert nvidia.libraries_in(str(root / "lib64")) == {
        "libcuda.so.1": str(root / "lib64" / "libcuda.so.1"),
        "libnvidia-ml.so.1": str(root / "lib64" / "libnvidia-ml.so.1"),
    }  # by soname, as the loader asks for them; not the CUDA runtime, not other libraries
    mounts = {m.target: m.source for m in nvidia.driver_mounts(driver_roots=(str(root),))}
    assert mounts[f"{LIB_DIR}/libcuda.so.1"] == str(root / "lib64" / "libcuda.so.580.159.03")
    assert mounts["/usr/local/nvidia/bin/nvidia-smi"] == str(root / "bin" / "nvidia-smi")


def test_a_container_gets_its_real_gpus_device_nodes_and_the_driver(monkeypatch):
    # This host has no NVIDIA driver: its ldconfig cache is the sample above.
    monkeypatch.setattr(nvidia, "driver_mounts", lambda: nvidia.library_mounts(nvidia.driver_libraries(LDCONFIG)))
    worker = LocalWorker(None, "/tmp/home", None, nvidia_gpus=(NvidiaGpu(0, "GPU-real-0", "H100", 3),))
    env = {"PATH": "/usr/bin"}
    devices, mounts = worker._gpus(["GPU-real-0"], env)
    assert devices == ["/dev/nvidia3"]  # by its minor number, not its index
    assert f"{LIB_DIR}/libcuda.so.1" in {m.target for m in mounts}
    assert all(m.readonly and m.target.startswith("/usr/local/nvidia/") for m in mounts)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-real-0"
    assert env["LD_LIBRARY_PATH"] == LIB_DIR and env["PATH"] == "/usr/bin:/usr/local/nvidia/bin"


class _FakeNvml(types.SimpleNamespace):
    """What pynvml answers on a host with GPU-a busy 80% and GPU-b 20%."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        super().__init__(started=0)

    def nvmlInit(self):
        self.started += 1

    def nvmlShutdown(self):
        self.started -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in ("GPU-a", "GPU-b"):
            raise self.NVMLError(uuid)
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu={"GPU-a": 80, "GPU-b": 20}[handle], memory=0)


def test_a_container_with_real_gpus_reports_their_utilisation(monkeypatch):
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = (NvidiaGpu(0, "GPU-a", "H100", 0), NvidiaGpu(1, "GPU-b", "H100", 1))
    worker = LocalWorker(None, "/tmp/home", None, nvidia_gpus=gpus)
    worker._real_gpus = {"ta-both": ["GPU-a", "GPU-b"], "ta-gone": ["GPU-gone"]}
    assert worker._gpu_utilization() == {"ta-both": 50.0}  # the mean of its two; none read for the other
    utilization = nvidia.Utilization()
    assert utilization.percent("GPU-a") == 80.0 and utilization.percent("GPU-x") is None
    utilization.close()
    assert utilization.percent("GPU-a") is None


def test_a_fake_gpu_is_only_named():
    worker = LocalWorker(None, "/tmp/home", None)
    env: dict[str, str] = {}
    assert worker._gpus(["GPU-fake-0-H100"], env) == ([], [])
    assert env == {"CUDA_VISIBLE_DEVICES": "GPU-fake-0-H100"}
