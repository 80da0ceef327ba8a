"""Finding the memory cgroup runc creates, to read OOM kills after the container has exited.

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


def _own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (not controller and not controllers):
                return path
    raise LookupError(controller)


def memory_hierarchy() -> MemoryHierarchy | None:
    """The memory controller's hierarchy (v1 memory mount or v2 unified), None if absent."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        sep = fields.index("-")
        root, point, fstype, superopts = fields[3], fields[4], fields[sep + 1], fields[sep + 3]
        v1 = fstype == "cgroup" and "memory" in superopts.split(",")
        if v1 or (fstype == "cgroup2" and point == "/sys/fs/cgroup"):
            own = _own_cgroup("memory" if v1 else "")
            return MemoryHierarchy(os.path.normpath(os.path.join(point, os.path.relpath(own, root))), not v1)
    return None
