"""Finding the cgroups runc creates: the memory one, to read OOM kills after the container has
exited and how much memory it uses, and the CPU accounting one, to read how much CPU time the
container has used.

runc resolves a relative cgroupsPath against the cgroup of the process that runs it,
i.e. ours (runc is our child), so that is where the container's cgroup appears.
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryHierarchy:
    parent: str  # host directory that relative cgroup paths are created under
    v2: bool

    def swap_limit_supported(self) -> bool:
        # cgroup v1 without swap accounting has no memsw files and runc fails on setting them.
        return self.v2 or os.path.exists(os.path.join(self.parent, "memory.memsw.limit_in_bytes"))

    def oom_killed(self, rel_path: str) -> bool:
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            with open(os.path.join(self.parent, rel_path, name)) as f:
                counters = dict(line.split() for line in f if len(line.split()) == 2)
        except OSError:
            return False
        return int(counters.get("oom_kill", 0)) > 0

    def working_set_bytes(self, rel_path: str) -> int | None:
        """Memory the cgroup's processes use: its usage less the file cache the kernel can drop
        at once (the working set, as Kubernetes meters it); None if there is no such cgroup."""
        usage_name, inactive_name = (
            ("memory.current", "inactive_file") if self.v2 else ("memory.usage_in_bytes", "total_inactive_file")
        )
        try:
            with open(os.path.join(self.parent, rel_path, usage_name)) as f:
                usage = int(f.read())
            with open(os.path.join(self.parent, rel_path, "memory.stat")) as f:
                stat = dict(line.split() for line in f if len(line.split()) == 2)
            return max(0, usage - int(stat.get(inactive_name, 0)))
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class CpuHierarchy:
    parent: str
    v2: bool

    def usage_seconds(self, rel_path: str) -> float | None:
        """CPU time used by every process of the cgroup so far; None if there is no such cgroup."""
        try:
            if self.v2:
                with open(os.path.join(self.parent, rel_path, "cpu.stat")) as f:
                    counters = dict(line.split() for line in f if len(line.split()) == 2)
                return int(counters["usage_usec"]) / 1e6
            with open(os.path.join(self.parent, rel_path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        except (OSError, KeyError, ValueError):
            return None


def _own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (not controller and not controllers):
                return path
    raise LookupError(controller)


def _hierarchy(controller: str) -> tuple[str, bool] | None:
    """Where our own cgroup of a controller lies (its v1 mount, or v2's unified one) and whether
    that is v2; None if the controller is absent."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        sep = fields.index("-")
        root, point, fstype, superopts = fields[3], fields[4], fields[sep + 1], fields[sep + 3]
        v1 = fstype == "cgroup" and controller in superopts.split(",")
        if v1 or (fstype == "cgroup2" and point == "/sys/fs/cgroup"):
            own = _own_cgroup(controller if v1 else "")
            return os.path.normpath(os.path.join(point, os.path.relpath(own, root))), not v1
    return None


def memory_hierarchy() -> MemoryHierarchy | None:
    found = _hierarchy("memory")
    return MemoryHierarchy(*found) if found else None


def cpu_hierarchy() -> CpuHierarchy | None:
    found = _hierarchy("cpuacct")
    return CpuHierarchy(*found) if found else None
