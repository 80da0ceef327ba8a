"""NVIDIA GPUs on this machine, found through NVML and handed to containers the way
NVIDIA's container toolkit does: the GPUs' device nodes (the runtime adds the driver's
control nodes), the driver's user-space libraries and tools bind-mounted read-only,
and CUDA_VISIBLE_DEVICES naming them by uuid.
"""

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ..runtime import BindMount

log = logging.getLogger(__name__)

# Where the driver's files appear in a container (as on GKE), put on its search paths.
LIB_DIR = "/usr/local/nvidia/lib64"
BIN_DIR = "/usr/local/nvidia/bin"
# The driver's compute and utility libraries (by soname prefix) and tools.
LIBRARIES = (
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-ml.so",
    "libnvidia-cfg.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",
    "libnvidia-gpucomp.so",
    "libnvidia-allocator.so",
    "libnvidia-opencl.so",
    "libnvidia-pkcs11.so",
)
# Where a driver installed outside the loader's cache keeps its lib64/ and bin/ (GKE's layout).
DRIVER_ROOTS = ("/usr/local/nvidia",)
BINARIES = (
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)
# Marketing names, most specific first, to the types `gpu=` names.
_NAMES = (
    ("H200", "H200"),
    ("H100", "H100"),
    ("B200", "B200"),
    ("L40S", "L40S"),
    ("A10G", "A10G"),
    ("L4", "L4"),
    ("T4", "T4"),
)


@dataclass(frozen=True)
class NvidiaGpu:
    index: int
    uuid: str
    gpu_type: str
    minor: int  # /dev/nvidia<minor>


def gpu_type(name: str, memory_mb: int) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100'; an A100 by its memory; others keep their own name."""
    upper = name.upper()
    if "A100" in upper:
        return "A100-80GB" if memory_mb > 50_000 else "A100-40GB"
    for marker, gpu in _NAMES:
        if re.search(rf"\b{marker}\b", upper):
            return gpu
    return upper.removeprefix("NVIDIA ").replace(" ", "-")


def discover() -> list[NvidiaGpu]:
    """The GPUs NVML reports; none where there is no NVIDIA driver."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory_mb = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            minor = pynvml.nvmlDeviceGetMinorNumber(handle)
            gpus.append(NvidiaGpu(index, uuid, gpu_type(name, memory_mb), minor))
        return gpus
    finally:
        pynvml.nvmlShutdown()


class Utilization:
    """How busy each GPU was over the driver's last sample period, in percent (NVML), by uuid."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        self._handles: dict[str, object] = {}
        try:
            pynvml.nvmlInit()
            self._ready = True
        except pynvml.NVMLError:
            log.warning("NVML did not start: no GPU utilisation readings")
            self._ready = False

    def percent(self, uuid: str) -> float | None:
        if not self._ready:
            return None
        try:
            if uuid not in self._handles:
                self._handles[uuid] = self._nvml.nvmlDeviceGetHandleByUUID(uuid)
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handles[uuid]).gpu)
        except self._nvml.NVMLError:
            return None

    def close(self) -> None:
        if self._ready:
            self._nvml.nvmlShutdown()
            self._ready = False


def driver_libraries(ldconfig_cache: str) -> dict[str, str]:
    """soname -> host file, for the driver's libraries in `ldconfig -p` output (64-bit only)."""
    found: dict[str, str] = {}
    for line in ldconfig_cache.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and m.group(1).startswith(LIBRARIES) and re.search("x86-64|AArch64", m.group(2)):
            found.setdefault(m.group(1), m.group(3))
    return found


def libraries_in(directory: str) -> dict[str, str]:
    """soname -> file, for the driver's libraries in a directory the loader's cache may not cover."""
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    sonames = (n for n in names if any(re.fullmatch(rf"{re.escape(lib)}(\.\d+)?", n) for lib in LIBRARIES))
    return {name: os.path.join(directory, name) for name in sorted(sonames)}


def library_mounts(libraries: dict[str, str]) -> list[BindMount]:
    return [BindMount(os.path.realpath(path), f"{LIB_DIR}/{so}") for so, path in libraries.items()]


def driver_mounts(driver_roots: tuple[str, ...] = DRIVER_ROOTS) -> list[BindMount]:
    """The driver's libraries and tools on this host, as read-only mounts under /usr/local/nvidia:
    those the loader's cache names, then those under a driver root it does not cover."""
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        log.warning("ldconfig -p failed: containers get only the NVIDIA libraries under %s", driver_roots)
        cache = ""
    libraries = driver_libraries(cache)
    for root in driver_roots:
        for directory in ("lib64", "lib"):
            libraries = libraries_in(os.path.join(root, directory)) | libraries
    mounts = library_mounts(libraries)
    search = os.pathsep.join(["/usr/bin", "/usr/local/bin", "/bin", *(os.path.join(r, "bin") for r in driver_roots)])
    for tool in BINARIES:
        if path := shutil.which(tool, path=search):
            mounts.append(BindMount(os.path.realpath(path), f"{BIN_DIR}/{tool}"))
    return mounts


def container_env(env: dict[str, str], uuids: list[str]) -> None:
    """Point the container's CUDA at its GPUs and at the mounted driver files."""
    env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(uuids)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH", ""), LIB_DIR) if p)
    path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["PATH"] = f"{path}:{BIN_DIR}"
