"""The OCI runtime config (config.json) runc runs a ContainerSpec from."""

import functools
import os
import resource
import stat
from typing import Any

from .spec import ContainerError, ContainerSpec

# Docker's default set: enough for apt-get and pip to work as root inside.
CAPABILITIES = [
    f"CAP_{c}"
    for c in (
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    )
]
# Control devices the NVIDIA driver needs next to the per-GPU /dev/nvidiaN nodes.
GPU_CONTROL_DEVICES = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
NOFILE = 65536
_CAP_SYS_RESOURCE = 24
CPU_PERIOD = 100_000
_NO_DEV = ["nosuid", "noexec", "nodev"]
# /dev is a tmpfs on which runc creates the usual null, zero, tty, ... nodes itself.
STANDARD_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": [*_NO_DEV, "mode=1777", "size=64m"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": _NO_DEV},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*_NO_DEV, "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": [*_NO_DEV, "relatime", "ro"]},
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@functools.cache
def nofile_limit() -> int:
    """NOFILE, or our own hard limit where we lack CAP_SYS_RESOURCE to raise it (runc would fail)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= NOFILE:
        return NOFILE
    with open("/proc/self/status") as f:
        cap_eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return NOFILE if cap_eff >> _CAP_SYS_RESOURCE & 1 else hard


def cgroups_path(container_id: str) -> str:
    return f"shoal/{container_id}"


def _gpu_devices(paths: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Device nodes to create and devices-cgroup rules allowing them."""
    nodes, rules = [], []
    extra = [p for p in GPU_CONTROL_DEVICES if p not in paths and os.path.exists(p)] if paths else []
    for path in [*paths, *extra]:
        try:
            st = os.stat(path)
        except OSError as e:
            raise ContainerError(f"GPU device {path}: {e.strerror}") from None
        if not stat.S_ISCHR(st.st_mode):
            raise ContainerError(f"GPU device {path} is not a character device")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        nodes.append(
            {
                "path": path,
                "type": "c",
                "major": major,
                "minor": minor,
                "fileMode": stat.S_IMODE(st.st_mode),
                "uid": 0,
                "gid": 0,
            }
        )
        rules.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
    return nodes, rules


def build_config(
    spec: ContainerSpec, user: tuple[int, int, list[int]], limit_swap: bool, netns: str | None = None
) -> dict[str, Any]:
    uid, gid, extra_gids = user
    mounts = list(STANDARD_MOUNTS)
    if os.path.exists("/etc/resolv.conf"):
        # runc creates the target file in the rootfs when the image has none.
        mounts.append(
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["bind", "ro"]}
        )
    mounts += [
        {
            "destination": b.target,
            "type": "bind",
            "source": b.source,
            "options": ["rbind", "ro" if b.readonly else "rw"],
        }
        for b in spec.bind_mounts
    ]
    devices, device_rules = _gpu_devices(spec.gpu_devices)
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}, *device_rules]}
    if spec.cpu is not None:
        resources["cpu"] = {"quota": max(1000, int(spec.cpu * CPU_PERIOD)), "period": CPU_PERIOD}
    if spec.memory_mb is not None:
        limit = spec.memory_mb * 1024 * 1024
        # swap is memory+swap in OCI terms: equal to the limit means no swapping past it.
        resources["memory"] = {"limit": limit, **({"swap": limit} if limit_swap else {})}
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, **({"additionalGids": extra_gids} if extra_gids else {})},
            "args": spec.args,
            "env": [f"{k}={v}" for k, v in spec.env.items()],
            "cwd": spec.cwd,
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile_limit(), "soft": nofile_limit()}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": mounts,
        "linux": {
            # With the network, containers share the host's, loopback services included; with a
            # network of its own, it joins the namespace made for it (`netns`); without any, a
            # namespace of its own with loopback alone (runc brings it up).
            "namespaces": [
                {"type": t} for t in ("pid", "ipc", "uts", "mount", *(() if spec.network or netns else ("network",)))
            ]
            + ([{"type": "network", "path": netns}] if netns else []),
            "cgroupsPath": cgroups_path(spec.id),
            "resources": resources,
            "devices": devices,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
    if spec.hostname:
        config["hostname"] = spec.hostname
    return config
