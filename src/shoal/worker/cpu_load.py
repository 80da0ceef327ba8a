"""How busy a worker's CPUs are, and how many cores each of its containers uses: where a
function's own containers keep the CPUs busy, more of them would only share the same cores."""

import os
import time

_TICK = os.sysconf("SC_CLK_TCK")


def _host_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot; waiting on I/O counts as idle."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _process_ticks(pid: int) -> int | None:
    """CPU ticks of a process and of the children it has waited for; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime


class CpuMeter:
    def __init__(self) -> None:
        self._host = _host_ticks()
        self._tasks: dict[str, int] = {}
        self._at = time.monotonic()

    def read(self, pids: dict[str, int]) -> tuple[float, dict[str, float]]:
        """The machine's busy fraction since the last reading, and the cores each container
        (task id -> pid of its first process) used since then; new ones appear from their second."""
        now, host = time.monotonic(), _host_ticks()
        elapsed = max(now - self._at, 1e-3)
        total = host[1] - self._host[1]
        busy = (host[0] - self._host[0]) / total if total > 0 else 0.0
        ticks = {task_id: t for task_id, pid in pids.items() if (t := _process_ticks(pid)) is not None}
        cores = {task: (t - self._tasks[task]) / _TICK / elapsed for task, t in ticks.items() if task in self._tasks}
        self._host, self._tasks, self._at = host, ticks, now
        return busy, cores
